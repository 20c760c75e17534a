// Loading the optional native addons built at `npm install` (scripts/build-native.mjs, native/):
// found from the package root wherever this file runs from (the sources under tsx, or dist/).
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository (or package) root: the first directory above this file that has package.json. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir)
    if (up === dir) break
    dir = up
  }
  return dir
}

/** Where the addon `name` of native/`dir` is once built. */
export function addonFile(dir: string, name: string): string {
  return path.join(packageRoot(), 'native', dir, 'build', 'Release', `${name}.node`)
}

/** The addon's exports, or an Error saying why it cannot be had (not built, or not loadable). */
export function loadAddon<T>(dir: string, name: string): T | Error {
  const file = addonFile(dir, name)
  if (!fs.existsSync(file)) return new Error(`${file} was not built`)
  try {
    return createRequire(import.meta.url)(file) as T
  } catch (e) {
    return new Error(`cannot load ${file}: ${e instanceof Error ? e.message : String(e)}`)
  }
}
