# The libcpg binding of the corosync cluster driver (sheep/cluster/corosync.ts). Built by
# scripts/build-native.mjs at `npm install` when corosync's headers are present.
{
  "targets": [
    {
      "target_name": "sheepdog_cpg",
      "sources": ["cpg.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "libraries": ["-lcpg"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
