// The interface every object store driver implements (behaviour.md §12.3–12.4). Results are
// Sheepdog result codes: a missing object is SD_RES_NO_OBJ, not an exception; an exception
// from a driver means the disk itself failed (EIO).

export interface ObjectWrite {
  oid: bigint
  offset: number
  data: Buffer
}

export interface StoreDriver {
  readonly name: string
  /** Prepare directories, drop leftover `.tmp` files, and return the objects found. */
  init(): Promise<void>
  /** Remove every object and stale copy (cluster format). */
  purge(): Promise<void>
  exists(oid: bigint): boolean
  /** Reads `length` bytes at `offset`; bytes past the end of the file read as zeros. */
  read(oid: bigint, offset: number, length: number): Promise<Buffer | number>
  /** Overwrites part of an existing object; SD_RES_NO_OBJ if it is absent. */
  write(w: ObjectWrite): Promise<number>
  /**
   * Creates the object atomically (temp file + rename) at its full `objectSize`, with `data` at
   * `offset`; unwritten parts read as zeros. An existing object is replaced, unless `ifAbsent`
   * (recovery must never overwrite what a client wrote meanwhile): then it is left alone.
   */
  create(w: ObjectWrite, objectSize: number, opts?: { ifAbsent?: boolean }): Promise<number>
  remove(oid: bigint): Promise<number>
  /** SHA-1 of the whole stored object (GET_HASH). */
  sha1(oid: bigint): Promise<Buffer | number>
  /** Every object id stored here, ascending. */
  list(): bigint[]
  /** Bytes used by stored objects. */
  usedBytes(): bigint

  // ---- the stale area (behaviour.md §7.2): replicas this node no longer holds, kept per epoch
  /** Moves a live object to the stale area, named with `epoch`. */
  moveToStale(oid: bigint, epoch: number): Promise<void>
  /** The newest stale copy of an object: its epoch, or undefined. */
  newestStale(oid: bigint): number | undefined
  readStale(oid: bigint, epoch: number, offset: number, length: number): Promise<Buffer | number>
  /** Every oid with a stale copy. */
  listStale(): bigint[]
  /** Drops the whole stale area (after the cluster finished recovering). */
  purgeStale(): Promise<void>
}
