# syncfs(2) for the object store's flush (sheep/store/syncfs.ts). Built by
# scripts/build-native.mjs at `npm install`; without it a flush fdatasyncs object by object.
{
  "targets": [
    {
      "target_name": "sheepdog_syncfs",
      "sources": ["syncfs.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
