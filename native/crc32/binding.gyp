# CRC-32 with carry-less multiplication for the checksum layer (sheep/store/crc32.ts). Built by
# scripts/build-native.mjs at `npm install`; without it (or on a CPU without PCLMULQDQ) the
# layer uses zlib's crc32, the same function, slower.
{
  "targets": [
    {
      "target_name": "sheepdog_crc32",
      "sources": ["crc32.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-O3", "-Wall", "-Wextra"]
    }
  ]
}
