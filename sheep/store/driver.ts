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
   * `offset`; unwritten parts read as zeros. An existing object is replaced.
   */
  create(w: ObjectWrite, objectSize: number): Promise<number>
  remove(oid: bigint): Promise<number>
  /** SHA-1 of the whole stored object (GET_HASH). */
  sha1(oid: bigint): Promise<Buffer | number>
  /** Every object id stored here, ascending. */
  list(): bigint[]
  /** Bytes used by stored objects. */
  usedBytes(): bigint
}
