# The object store's system calls that Node lacks, syncfs(2), preadv2(2) with RWF_NOWAIT and
# writes in pieces in one pool job (sheep/store/native-io.ts), and mallopt(3) (lib/malloc.ts).
# Built by scripts/build-native.mjs at `npm install`; without it a flush fdatasyncs object by
# object, every read goes to the thread pool, a large write takes a pool trip per piece, and
# dog's data commands run with glibc's default malloc settings.
{
  "targets": [
    {
      "target_name": "sheepdog_storeio",
      "sources": ["storeio.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"]
    }
  ]
}
