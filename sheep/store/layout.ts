// Where an object lives inside one object disk, per store driver (behaviour.md §12.3–12.4): the
// plain store keeps every object in the disk's top directory; the tree store keeps inode,
// vmstate and attribute objects under `meta/` and every other object under `<xx>/`, xx the
// low byte of the vid in two hex digits (the original's tree_store.c). Temporary files sit
// beside the object (`<name>.tmp`); stale copies are in `<disk>/.stale/` for both stores.
import path from 'node:path'
import { isVdiAttrObj, isVdiObj, isVmstateObj, keyFileName, oidOfKey } from '../../lib/oid.js'

/** A store driver's layout: which directories a disk has, and an object's path inside a disk. */
export interface StoreLayout {
  /** The store's name, as `dog cluster format -b NAME` gives it. */
  readonly name: string
  /** Directories (relative to the disk, '' for the disk itself) that hold objects. */
  readonly dirs: readonly string[]
  /** The file of an object or strip (a store key, lib/oid.ts), relative to its disk. */
  objectPath(key: bigint): string
}

/** The file name of a store key: `<oid>` or, for a strip, `<oid>_<index>`. */
export const oidFileName = keyFileName

const PLAIN: StoreLayout = {
  name: 'plain',
  dirs: [''],
  objectPath: oidFileName,
}

/** The tree store's directory of a data-like object: bits 32–39 of the oid. */
const TREE_DIR_SHIFT = 32n
const TREE_DIR_MASK = 0xffn
const TREE_META_DIR = 'meta'
const TREE_DIR_COUNT = 256

function treeDir(key: bigint): string {
  const oid = oidOfKey(key)
  if (isVdiObj(oid) || isVmstateObj(oid) || isVdiAttrObj(oid)) return TREE_META_DIR
  return ((oid >> TREE_DIR_SHIFT) & TREE_DIR_MASK).toString(16).padStart(2, '0')
}

const TREE: StoreLayout = {
  name: 'tree',
  dirs: [TREE_META_DIR, ...Array.from({ length: TREE_DIR_COUNT }, (_, i) => i.toString(16).padStart(2, '0'))],
  objectPath: (oid) => path.join(treeDir(oid), oidFileName(oid)),
}

/**
 * The store drivers, in the order GET_STORE_LIST names them (the original registers each
 * driver at the head of its list, so the last linked comes first: `tree plain `).
 */
export const STORE_LAYOUTS: readonly StoreLayout[] = [TREE, PLAIN]

/** The store a node uses before its cluster is formatted with one. */
export const DEFAULT_STORE_LAYOUT = PLAIN

export function storeLayout(name: string): StoreLayout | undefined {
  return STORE_LAYOUTS.find((l) => l.name === name)
}
