// The Sheepdog 1.x wire vocabulary: opcodes, request flags, result codes with the labels dog
// prints, protocol versions and the limits every decoder checks. One table each; names keep
// Sheepdog's spelling so they can be grepped against the spec (wire-protocol.md §1, §4–8).

export const SD_PROTO_VER = 0x02
export const SD_SHEEP_PROTO_VER = 0x0a
export const SD_DEFAULT_PORT = 7000
export const SD_HEADER_SIZE = 48

/**
 * Value → name (without `prefix`) of a set of constants passed by their own names, so each
 * number is written once; two constants with one value are a bug caught at load.
 */
function namesByValue(prefix: string, constants: Record<string, number>): Map<number, string> {
  const names = new Map<number, string>()
  for (const [name, value] of Object.entries(constants)) {
    if (names.has(value)) throw new Error(`invariant violated: ${name} and ${prefix}${names.get(value)} share the value 0x${value.toString(16)}`)
    names.set(value, name.slice(prefix.length))
  }
  return names
}

// Opcodes (wire-protocol.md §5). Client ops are < 0x80, internal ops >= 0x80.
export const SD_OP_CREATE_AND_WRITE_OBJ = 0x01
export const SD_OP_READ_OBJ = 0x02
export const SD_OP_WRITE_OBJ = 0x03
export const SD_OP_REMOVE_OBJ = 0x04
export const SD_OP_DISCARD_OBJ = 0x05
export const SD_OP_NEW_VDI = 0x11
export const SD_OP_LOCK_VDI = 0x12
export const SD_OP_RELEASE_VDI = 0x13
export const SD_OP_GET_VDI_INFO = 0x14
export const SD_OP_READ_VDIS = 0x15
export const SD_OP_FLUSH_VDI = 0x16
export const SD_OP_DEL_VDI = 0x17
export const SD_OP_GET_CLUSTER_DEFAULT = 0x18
export const SD_OP_GET_NODE_LIST = 0x82
export const SD_OP_MAKE_FS = 0x84
export const SD_OP_SHUTDOWN = 0x85
export const SD_OP_STAT_SHEEP = 0x86
export const SD_OP_STAT_CLUSTER = 0x87
export const SD_OP_GET_VDI_ATTR = 0x89
export const SD_OP_FORCE_RECOVER = 0x8a
export const SD_OP_GET_STORE_LIST = 0x90
export const SD_OP_SNAPSHOT = 0x91
export const SD_OP_RESTORE = 0x92
export const SD_OP_GET_SNAP_FILE = 0x93
export const SD_OP_CLEANUP = 0x94
export const SD_OP_TRACE_STATUS = 0x95
export const SD_OP_TRACE_READ_BUF = 0x96
export const SD_OP_STAT_RECOVERY = 0x97
export const SD_OP_FLUSH_DEL_CACHE = 0x98
export const SD_OP_NOTIFY_VDI_DEL = 0x99
export const SD_OP_KILL_NODE = 0x9a
export const SD_OP_TRACE_ENABLE = 0x9b
export const SD_OP_TRACE_DISABLE = 0x9c
export const SD_OP_GET_OBJ_LIST = 0xa1
export const SD_OP_GET_EPOCH = 0xa2
export const SD_OP_CREATE_AND_WRITE_PEER = 0xa3
export const SD_OP_READ_PEER = 0xa4
export const SD_OP_WRITE_PEER = 0xa5
export const SD_OP_REMOVE_PEER = 0xa6
export const SD_OP_ENABLE_RECOVER = 0xa8
export const SD_OP_DISABLE_RECOVER = 0xa9
export const SD_OP_GET_VDI_COPIES = 0xab
export const SD_OP_COMPLETE_RECOVERY = 0xac
export const SD_OP_NOTIFY_VDI_ADD = 0xaf
export const SD_OP_DELETE_CACHE = 0xb0
export const SD_OP_MD_INFO = 0xb1
export const SD_OP_MD_PLUG = 0xb2
export const SD_OP_MD_UNPLUG = 0xb3
export const SD_OP_GET_HASH = 0xb4
export const SD_OP_REWEIGHT = 0xb5
export const SD_OP_STAT = 0xb8
export const SD_OP_GET_LOGLEVEL = 0xb9
export const SD_OP_SET_LOGLEVEL = 0xba
export const SD_OP_EXIST = 0xbd
export const SD_OP_CLUSTER_INFO = 0xbe
export const SD_OP_ALTER_CLUSTER_COPY = 0xbf
export const SD_OP_ALTER_VDI_COPY = 0xc0
export const SD_OP_DECREF_OBJ = 0xc1
export const SD_OP_DECREF_PEER = 0xc2
export const SD_OP_REPAIR_REPLICA = 0xc5
export const SD_OP_OIDS_EXIST = 0xc6
export const SD_OP_VDI_STATE_CHECKPOINT_CTL = 0xc7
export const SD_OP_INODE_COHERENCE = 0xc8
export const SD_OP_READ_DEL_VDIS = 0xc9
export const SD_OP_GET_RECOVERY = 0xca
export const SD_OP_SET_RECOVERY = 0xcb
export const SD_OP_SET_VNODES = 0xcc
export const SD_OP_GET_VNODES = 0xcd
// Our own opcodes (not in Sheepdog 1.x, whose internal ops end at 0xcd): from 0xe0 up, so a
// later original opcode is unlikely to collide; the original answers them SD_RES_NO_SUPPORT and
// its peers never see them. Each value once, here.
// The NBD server's write-back cache (issue #15): writes sent with SD_FLAG_CMD_UNSTABLE may sit
// in the page cache of their replicas; SYNC_NODES makes every such write accepted before it
// durable, by sending SYNC_PEER to every node of the cluster.
/** Gateway: every unstable write accepted so far made durable on every node. */
export const SD_OP_SYNC_NODES = 0xe0
/** Peer: every unstable write this node's store accepted so far made durable. */
export const SD_OP_SYNC_PEER = 0xe1
/**
 * Cluster message only (sheep/cluster/op-message.ts): a member's new weight announced through a
 * driver without UPDATE_NODE (local, zookeeper), as a vdi_op_message whose data is its sd_node.
 */
export const SD_OP_PRIVATE_NODE_UPDATE = 0xe2
/** The scrubber of one node (docs/integrity.md): start, stop, or status (REQ_SCRUB, SCRUB_STATUS). */
export const SD_OP_SCRUB = 0xf0

/** Opcode → name without the SD_OP_ prefix, for logs and error messages (each opcode once, above). */
export const OPCODE_NAMES: ReadonlyMap<number, string> = namesByValue('SD_OP_', {
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_READ_OBJ,
  SD_OP_WRITE_OBJ,
  SD_OP_REMOVE_OBJ,
  SD_OP_DISCARD_OBJ,
  SD_OP_NEW_VDI,
  SD_OP_LOCK_VDI,
  SD_OP_RELEASE_VDI,
  SD_OP_GET_VDI_INFO,
  SD_OP_READ_VDIS,
  SD_OP_FLUSH_VDI,
  SD_OP_DEL_VDI,
  SD_OP_GET_CLUSTER_DEFAULT,
  SD_OP_GET_NODE_LIST,
  SD_OP_MAKE_FS,
  SD_OP_SHUTDOWN,
  SD_OP_STAT_SHEEP,
  SD_OP_STAT_CLUSTER,
  SD_OP_GET_VDI_ATTR,
  SD_OP_FORCE_RECOVER,
  SD_OP_GET_STORE_LIST,
  SD_OP_SNAPSHOT,
  SD_OP_RESTORE,
  SD_OP_GET_SNAP_FILE,
  SD_OP_CLEANUP,
  SD_OP_TRACE_STATUS,
  SD_OP_TRACE_READ_BUF,
  SD_OP_STAT_RECOVERY,
  SD_OP_FLUSH_DEL_CACHE,
  SD_OP_NOTIFY_VDI_DEL,
  SD_OP_KILL_NODE,
  SD_OP_TRACE_ENABLE,
  SD_OP_TRACE_DISABLE,
  SD_OP_GET_OBJ_LIST,
  SD_OP_GET_EPOCH,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_READ_PEER,
  SD_OP_WRITE_PEER,
  SD_OP_REMOVE_PEER,
  SD_OP_ENABLE_RECOVER,
  SD_OP_DISABLE_RECOVER,
  SD_OP_GET_VDI_COPIES,
  SD_OP_COMPLETE_RECOVERY,
  SD_OP_NOTIFY_VDI_ADD,
  SD_OP_DELETE_CACHE,
  SD_OP_MD_INFO,
  SD_OP_MD_PLUG,
  SD_OP_MD_UNPLUG,
  SD_OP_GET_HASH,
  SD_OP_REWEIGHT,
  SD_OP_STAT,
  SD_OP_GET_LOGLEVEL,
  SD_OP_SET_LOGLEVEL,
  SD_OP_EXIST,
  SD_OP_CLUSTER_INFO,
  SD_OP_ALTER_CLUSTER_COPY,
  SD_OP_ALTER_VDI_COPY,
  SD_OP_DECREF_OBJ,
  SD_OP_DECREF_PEER,
  SD_OP_REPAIR_REPLICA,
  SD_OP_OIDS_EXIST,
  SD_OP_VDI_STATE_CHECKPOINT_CTL,
  SD_OP_INODE_COHERENCE,
  SD_OP_READ_DEL_VDIS,
  SD_OP_GET_RECOVERY,
  SD_OP_SET_RECOVERY,
  SD_OP_SET_VNODES,
  SD_OP_GET_VNODES,
  SD_OP_SYNC_NODES,
  SD_OP_SYNC_PEER,
  SD_OP_PRIVATE_NODE_UPDATE,
  SD_OP_SCRUB,
})

export function opcodeName(opcode: number): string {
  return OPCODE_NAMES.get(opcode) ?? `0x${opcode.toString(16)}`
}

/** Gateway op → the peer op it becomes when forwarded (wire-protocol.md §5.2 notes). */
export const GATEWAY_TO_PEER_OP: ReadonlyMap<number, number> = new Map([
  [SD_OP_CREATE_AND_WRITE_OBJ, SD_OP_CREATE_AND_WRITE_PEER],
  [SD_OP_READ_OBJ, SD_OP_READ_PEER],
  [SD_OP_WRITE_OBJ, SD_OP_WRITE_PEER],
  [SD_OP_REMOVE_OBJ, SD_OP_REMOVE_PEER],
  [SD_OP_DECREF_OBJ, SD_OP_DECREF_PEER],
])

// Request flags (wire-protocol.md §4).
export const SD_FLAG_CMD_WRITE = 0x0001
export const SD_FLAG_CMD_COW = 0x0002
export const SD_FLAG_CMD_CACHE = 0x0004
export const SD_FLAG_CMD_DIRECT = 0x0008
export const SD_FLAG_CMD_PIGGYBACK = 0x0010
export const SD_FLAG_CMD_TGT = 0x0020
export const SD_FLAG_CMD_FWD = 0x0040
export const SD_FLAG_CMD_RECOVERY = 0x0080
export const SD_FLAG_CMD_WILDCARD = 0x0100
export const SD_FLAG_CMD_CREAT = 0x0100
export const SD_FLAG_CMD_EXCL = 0x0200
export const SD_FLAG_CMD_DEL = 0x0400
/**
 * Ours: a WRITE_OBJ / WRITE_PEER whose data need not be durable when it is answered, only after
 * the next SD_OP_SYNC_NODES (a peer that does not know it writes durably anyway).
 */
export const SD_FLAG_CMD_UNSTABLE = 0x8000

// Result codes (wire-protocol.md §6).
export const SD_RES_SUCCESS = 0x00
export const SD_RES_UNKNOWN = 0x01
export const SD_RES_NO_OBJ = 0x02
export const SD_RES_EIO = 0x03
export const SD_RES_VDI_EXIST = 0x04
export const SD_RES_INVALID_PARMS = 0x05
export const SD_RES_SYSTEM_ERROR = 0x06
export const SD_RES_VDI_LOCKED = 0x07
export const SD_RES_NO_VDI = 0x08
export const SD_RES_NO_BASE_VDI = 0x09
export const SD_RES_VDI_READ = 0x0a
export const SD_RES_VDI_WRITE = 0x0b
export const SD_RES_BASE_VDI_READ = 0x0c
export const SD_RES_BASE_VDI_WRITE = 0x0d
export const SD_RES_NO_TAG = 0x0e
export const SD_RES_STARTUP = 0x0f
export const SD_RES_VDI_NOT_LOCKED = 0x10
export const SD_RES_SHUTDOWN = 0x11
export const SD_RES_NO_MEM = 0x12
export const SD_RES_FULL_VDI = 0x13
export const SD_RES_VER_MISMATCH = 0x14
export const SD_RES_NO_SPACE = 0x15
export const SD_RES_WAIT_FOR_FORMAT = 0x16
export const SD_RES_WAIT_FOR_JOIN = 0x17
export const SD_RES_JOIN_FAILED = 0x18
export const SD_RES_HALT = 0x19
export const SD_RES_READONLY = 0x1a
export const SD_RES_INODE_INVALIDATED = 0x1d
export const SD_RES_OLD_NODE_VER = 0x81
export const SD_RES_NEW_NODE_VER = 0x82
export const SD_RES_NOT_FORMATTED = 0x83
export const SD_RES_INVALID_CTIME = 0x84
export const SD_RES_INVALID_EPOCH = 0x85
export const SD_RES_NETWORK_ERROR = 0x86
export const SD_RES_NO_CACHE = 0x87
export const SD_RES_BUFFER_SMALL = 0x88
export const SD_RES_FORCE_RECOVER = 0x89
export const SD_RES_NO_STORE = 0x8a
export const SD_RES_NO_SUPPORT = 0x8b
export const SD_RES_NODE_IN_RECOVERY = 0x8c
export const SD_RES_KILLED = 0x8d
export const SD_RES_OID_EXIST = 0x8e
export const SD_RES_AGAIN = 0x8f
export const SD_RES_STALE_OBJ = 0x90
export const SD_RES_CLUSTER_ERROR = 0x91
export const SD_RES_VDI_NOT_EMPTY = 0x92
export const SD_RES_NOT_FOUND = 0x93
export const SD_RES_INCOMPLETE = 0x94
export const SD_RES_COLLECTING_CINFO = 0x95
export const SD_RES_GATEWAY_MODE = 0x97
export const SD_RES_INVALID_VNODES_STRATEGY = 0x98
export const SD_RES_NO_CHECKPOINT_ENTRY = 0x99

/** Result code → name without the SD_RES_ prefix (each code once, above). */
const RESULT_NAMES: ReadonlyMap<number, string> = namesByValue('SD_RES_', {
  SD_RES_SUCCESS,
  SD_RES_UNKNOWN,
  SD_RES_NO_OBJ,
  SD_RES_EIO,
  SD_RES_VDI_EXIST,
  SD_RES_INVALID_PARMS,
  SD_RES_SYSTEM_ERROR,
  SD_RES_VDI_LOCKED,
  SD_RES_NO_VDI,
  SD_RES_NO_BASE_VDI,
  SD_RES_VDI_READ,
  SD_RES_VDI_WRITE,
  SD_RES_BASE_VDI_READ,
  SD_RES_BASE_VDI_WRITE,
  SD_RES_NO_TAG,
  SD_RES_STARTUP,
  SD_RES_VDI_NOT_LOCKED,
  SD_RES_SHUTDOWN,
  SD_RES_NO_MEM,
  SD_RES_FULL_VDI,
  SD_RES_VER_MISMATCH,
  SD_RES_NO_SPACE,
  SD_RES_WAIT_FOR_FORMAT,
  SD_RES_WAIT_FOR_JOIN,
  SD_RES_JOIN_FAILED,
  SD_RES_HALT,
  SD_RES_READONLY,
  SD_RES_INODE_INVALIDATED,
  SD_RES_OLD_NODE_VER,
  SD_RES_NEW_NODE_VER,
  SD_RES_NOT_FORMATTED,
  SD_RES_INVALID_CTIME,
  SD_RES_INVALID_EPOCH,
  SD_RES_NETWORK_ERROR,
  SD_RES_NO_CACHE,
  SD_RES_BUFFER_SMALL,
  SD_RES_FORCE_RECOVER,
  SD_RES_NO_STORE,
  SD_RES_NO_SUPPORT,
  SD_RES_NODE_IN_RECOVERY,
  SD_RES_KILLED,
  SD_RES_OID_EXIST,
  SD_RES_AGAIN,
  SD_RES_STALE_OBJ,
  SD_RES_CLUSTER_ERROR,
  SD_RES_VDI_NOT_EMPTY,
  SD_RES_NOT_FOUND,
  SD_RES_INCOMPLETE,
  SD_RES_COLLECTING_CINFO,
  SD_RES_GATEWAY_MODE,
  SD_RES_INVALID_VNODES_STRATEGY,
  SD_RES_NO_CHECKPOINT_ENTRY,
})
/** Result code → the label dog prints; results the original has no label for are undefined. */
const RESULT_LABELS: ReadonlyMap<number, string | undefined> = new Map<number, string | undefined>([
  [SD_RES_SUCCESS, 'Success'],
  [SD_RES_UNKNOWN, 'Unknown error'],
  [SD_RES_NO_OBJ, 'No object found'],
  [SD_RES_EIO, 'I/O error'],
  [SD_RES_VDI_EXIST, 'VDI exists already'],
  [SD_RES_INVALID_PARMS, 'Invalid parameters'],
  [SD_RES_SYSTEM_ERROR, 'System error'],
  [SD_RES_VDI_LOCKED, 'VDI is already locked'],
  [SD_RES_NO_VDI, 'No VDI found'],
  [SD_RES_NO_BASE_VDI, 'No base VDI found'],
  [SD_RES_VDI_READ, 'Failed to read from requested VDI'],
  [SD_RES_VDI_WRITE, 'Failed to write to requested VDI'],
  [SD_RES_BASE_VDI_READ, 'Failed to read from base VDI'],
  [SD_RES_BASE_VDI_WRITE, 'Failed to write to base VDI'],
  [SD_RES_NO_TAG, 'Failed to find requested tag'],
  [SD_RES_STARTUP, 'System is still booting'],
  [SD_RES_VDI_NOT_LOCKED, 'VDI is not locked'],
  [SD_RES_SHUTDOWN, 'System is shutting down'],
  [SD_RES_NO_MEM, 'Out of memory on server'],
  [SD_RES_FULL_VDI, 'Maximum number of VDIs reached'],
  [SD_RES_VER_MISMATCH, 'Protocol version mismatch'],
  [SD_RES_NO_SPACE, 'Server has no space for new objects'],
  [SD_RES_WAIT_FOR_FORMAT, 'Waiting for cluster to be formatted'],
  [SD_RES_WAIT_FOR_JOIN, 'Waiting for other nodes to join cluster'],
  [SD_RES_JOIN_FAILED, 'Node has failed to join cluster'],
  [SD_RES_HALT, 'IO has halted as there are not enough living nodes'],
  [SD_RES_READONLY, 'Object is read-only'],
  [SD_RES_INODE_INVALIDATED, 'Inode object is invalidated'],
  [SD_RES_OLD_NODE_VER, 'Request has an old epoch'],
  [SD_RES_NEW_NODE_VER, 'Request has a new epoch'],
  [SD_RES_NOT_FORMATTED, 'Cluster has not been formatted'],
  [SD_RES_INVALID_CTIME, 'Creation times differ'],
  [SD_RES_INVALID_EPOCH, 'Invalid epoch'],
  [SD_RES_NETWORK_ERROR, 'Network error between sheep'],
  [SD_RES_NO_CACHE, 'No cache object found'],
  [SD_RES_BUFFER_SMALL, 'The buffer is too small'],
  [SD_RES_FORCE_RECOVER, 'Cluster is running/halted and cannot be force recovered'],
  [SD_RES_NO_STORE, 'Targeted backend store is not found'],
  [SD_RES_NO_SUPPORT, 'Operation is not supported'],
  [SD_RES_NODE_IN_RECOVERY, 'Targeted node is in recovery'],
  [SD_RES_KILLED, 'Node is killed'],
  [SD_RES_OID_EXIST, 'Object ID exists already'],
  [SD_RES_AGAIN, 'Ask to try again'],
  [SD_RES_STALE_OBJ, 'Object may be stale'],
  [SD_RES_CLUSTER_ERROR, 'Cluster driver error'],
  [SD_RES_VDI_NOT_EMPTY, undefined],
  [SD_RES_NOT_FOUND, undefined],
  [SD_RES_INCOMPLETE, undefined],
  [SD_RES_COLLECTING_CINFO, undefined],
  [SD_RES_GATEWAY_MODE, 'Targeted node is gateway mode'],
  [SD_RES_INVALID_VNODES_STRATEGY, 'Invalid cluster vnodes strategy'],
  [SD_RES_NO_CHECKPOINT_ENTRY, undefined],
])

/** The text dog prints for a result code (wire-protocol.md §6). */
export function resultLabel(code: number): string {
  return RESULT_LABELS.get(code) ?? `Invalid error code ${code.toString(16)}`
}

export function resultName(code: number): string {
  return RESULT_NAMES.get(code) ?? `0x${code.toString(16)}`
}

// Cluster status (sd_status) and cluster flags (wire-protocol.md §7.3).
export const SD_STATUS_OK = 1
export const SD_STATUS_WAIT = 2
export const SD_STATUS_SHUTDOWN = 3
export const SD_STATUS_KILLED = 4

export const SD_CLUSTER_FLAG_STRICT = 0x0001
export const SD_CLUSTER_FLAG_DISKMODE = 0x0002
export const SD_CLUSTER_FLAG_AUTO_VNODES = 0x0004
export const SD_CLUSTER_FLAG_USE_LOCK = 0x0008
export const SD_CLUSTER_FLAG_RECYCLE_VID = 0x0010
export const SD_CLUSTER_FLAG_AVOID_DISKFULL = 0x0020

// Limits and defaults (wire-protocol.md §7.3, §8.2).
export const SD_MAX_NODES = 6144
export const SD_MAX_COPIES = 31
export const SD_DEFAULT_COPIES = 3
export const SD_DEFAULT_VNODES = 128
/** The most vnodes a node may have (sd_node.nr_vnodes is a u16). */
export const SD_MAX_VNODES = 65535

// VDI lock types: the `type` of LOCK_VDI and RELEASE_VDI (wire-protocol.md §9.3).
export const LOCK_TYPE_NORMAL = 0
export const LOCK_TYPE_SHARED = 1

// Recovery states: the `state` STAT_RECOVERY answers (behaviour.md §7.6).
export const RECOVERY_STATE_PREPARING = 0
export const RECOVERY_STATE_RECOVERING = 1
export const RECOVERY_STATE_NOTIFYING = 2
export const SD_DEFAULT_BLOCK_SIZE_SHIFT = 22
export const SD_MAX_VDI_LEN = 256
export const SD_MAX_VDI_TAG_LEN = 256
export const SD_MAX_VDI_ATTR_KEY_LEN = 256
export const SD_MAX_VDI_ATTR_VALUE_LEN = 65536
export const SD_NR_VDIS = 1 << 24
export const SD_VDI_BITMAP_SIZE = SD_NR_VDIS / 8
export const SD_EC_MAX_STRIP = 16
export const SD_MAX_VDI_SIZE = 1n << 54n

/**
 * The largest payload this implementation accepts or returns in one frame. The biggest
 * legitimate frames are a whole inode (12 587 576 bytes) and, for recovery object lists, a
 * buffer that doubles on BUFFER_SMALL; 64 MiB leaves room for objects up to the largest
 * block_size_shift we serve while still bounding what a malformed header can make us allocate.
 */
export const SD_MAX_DATA_LENGTH = 64 * 1024 * 1024
/** Biggest payload a request may carry into sheep (objects are at most 2^31 but we cap at this). */
export const SD_MAX_REQUEST_PAYLOAD = SD_MAX_DATA_LENGTH
/**
 * Whole objects (up to 2^31 bytes with block_size_shift 31) move between nodes and tools in
 * pieces of at most this size: recovery, REPAIR_REPLICA, copy-on-write, backup, clone and the
 * cluster snapshot farm. Half the frame limit keeps each request well inside it while bounding
 * what one transfer holds in memory.
 */
export const OBJECT_CHUNK_BYTES = Math.min(32 * 1024 * 1024, SD_MAX_DATA_LENGTH)
