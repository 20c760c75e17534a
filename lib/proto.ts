// The Sheepdog 1.x wire vocabulary: opcodes, request flags, result codes with the labels dog
// prints, protocol versions and the limits every decoder checks. One table each; names keep
// Sheepdog's spelling so they can be grepped against the spec (wire-protocol.md §1, §4–8).

export const SD_PROTO_VER = 0x02
export const SD_SHEEP_PROTO_VER = 0x0a
export const SD_DEFAULT_PORT = 7000
export const SD_HEADER_SIZE = 48

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

/** Opcode → name without the SD_OP_ prefix, for logs and error messages. */
export const OPCODE_NAMES: ReadonlyMap<number, string> = new Map([
  [0x01, 'CREATE_AND_WRITE_OBJ'],
  [0x02, 'READ_OBJ'],
  [0x03, 'WRITE_OBJ'],
  [0x04, 'REMOVE_OBJ'],
  [0x05, 'DISCARD_OBJ'],
  [0x11, 'NEW_VDI'],
  [0x12, 'LOCK_VDI'],
  [0x13, 'RELEASE_VDI'],
  [0x14, 'GET_VDI_INFO'],
  [0x15, 'READ_VDIS'],
  [0x16, 'FLUSH_VDI'],
  [0x17, 'DEL_VDI'],
  [0x18, 'GET_CLUSTER_DEFAULT'],
  [0x82, 'GET_NODE_LIST'],
  [0x84, 'MAKE_FS'],
  [0x85, 'SHUTDOWN'],
  [0x86, 'STAT_SHEEP'],
  [0x87, 'STAT_CLUSTER'],
  [0x89, 'GET_VDI_ATTR'],
  [0x8a, 'FORCE_RECOVER'],
  [0x90, 'GET_STORE_LIST'],
  [0x91, 'SNAPSHOT'],
  [0x92, 'RESTORE'],
  [0x93, 'GET_SNAP_FILE'],
  [0x94, 'CLEANUP'],
  [0x95, 'TRACE_STATUS'],
  [0x96, 'TRACE_READ_BUF'],
  [0x97, 'STAT_RECOVERY'],
  [0x98, 'FLUSH_DEL_CACHE'],
  [0x99, 'NOTIFY_VDI_DEL'],
  [0x9a, 'KILL_NODE'],
  [0x9b, 'TRACE_ENABLE'],
  [0x9c, 'TRACE_DISABLE'],
  [0xa1, 'GET_OBJ_LIST'],
  [0xa2, 'GET_EPOCH'],
  [0xa3, 'CREATE_AND_WRITE_PEER'],
  [0xa4, 'READ_PEER'],
  [0xa5, 'WRITE_PEER'],
  [0xa6, 'REMOVE_PEER'],
  [0xa8, 'ENABLE_RECOVER'],
  [0xa9, 'DISABLE_RECOVER'],
  [0xab, 'GET_VDI_COPIES'],
  [0xac, 'COMPLETE_RECOVERY'],
  [0xaf, 'NOTIFY_VDI_ADD'],
  [0xb0, 'DELETE_CACHE'],
  [0xb1, 'MD_INFO'],
  [0xb2, 'MD_PLUG'],
  [0xb3, 'MD_UNPLUG'],
  [0xb4, 'GET_HASH'],
  [0xb5, 'REWEIGHT'],
  [0xb8, 'STAT'],
  [0xb9, 'GET_LOGLEVEL'],
  [0xba, 'SET_LOGLEVEL'],
  [0xbd, 'EXIST'],
  [0xbe, 'CLUSTER_INFO'],
  [0xbf, 'ALTER_CLUSTER_COPY'],
  [0xc0, 'ALTER_VDI_COPY'],
  [0xc1, 'DECREF_OBJ'],
  [0xc2, 'DECREF_PEER'],
  [0xc5, 'REPAIR_REPLICA'],
  [0xc6, 'OIDS_EXIST'],
  [0xc7, 'VDI_STATE_CHECKPOINT_CTL'],
  [0xc8, 'INODE_COHERENCE'],
  [0xc9, 'READ_DEL_VDIS'],
  [0xca, 'GET_RECOVERY'],
  [0xcb, 'SET_RECOVERY'],
  [0xcc, 'SET_VNODES'],
  [0xcd, 'GET_VNODES'],
])

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

/** Result code → [name, label printed by dog]; labels absent in the original are undefined. */
const RESULTS: ReadonlyArray<[number, string, string | undefined]> = [
  [0x00, 'SUCCESS', 'Success'],
  [0x01, 'UNKNOWN', 'Unknown error'],
  [0x02, 'NO_OBJ', 'No object found'],
  [0x03, 'EIO', 'I/O error'],
  [0x04, 'VDI_EXIST', 'VDI exists already'],
  [0x05, 'INVALID_PARMS', 'Invalid parameters'],
  [0x06, 'SYSTEM_ERROR', 'System error'],
  [0x07, 'VDI_LOCKED', 'VDI is already locked'],
  [0x08, 'NO_VDI', 'No VDI found'],
  [0x09, 'NO_BASE_VDI', 'No base VDI found'],
  [0x0a, 'VDI_READ', 'Failed to read from requested VDI'],
  [0x0b, 'VDI_WRITE', 'Failed to write to requested VDI'],
  [0x0c, 'BASE_VDI_READ', 'Failed to read from base VDI'],
  [0x0d, 'BASE_VDI_WRITE', 'Failed to write to base VDI'],
  [0x0e, 'NO_TAG', 'Failed to find requested tag'],
  [0x0f, 'STARTUP', 'System is still booting'],
  [0x10, 'VDI_NOT_LOCKED', 'VDI is not locked'],
  [0x11, 'SHUTDOWN', 'System is shutting down'],
  [0x12, 'NO_MEM', 'Out of memory on server'],
  [0x13, 'FULL_VDI', 'Maximum number of VDIs reached'],
  [0x14, 'VER_MISMATCH', 'Protocol version mismatch'],
  [0x15, 'NO_SPACE', 'Server has no space for new objects'],
  [0x16, 'WAIT_FOR_FORMAT', 'Waiting for cluster to be formatted'],
  [0x17, 'WAIT_FOR_JOIN', 'Waiting for other nodes to join cluster'],
  [0x18, 'JOIN_FAILED', 'Node has failed to join cluster'],
  [0x19, 'HALT', 'IO has halted as there are not enough living nodes'],
  [0x1a, 'READONLY', 'Object is read-only'],
  [0x1d, 'INODE_INVALIDATED', 'Inode object is invalidated'],
  [0x81, 'OLD_NODE_VER', 'Request has an old epoch'],
  [0x82, 'NEW_NODE_VER', 'Request has a new epoch'],
  [0x83, 'NOT_FORMATTED', 'Cluster has not been formatted'],
  [0x84, 'INVALID_CTIME', 'Creation times differ'],
  [0x85, 'INVALID_EPOCH', 'Invalid epoch'],
  [0x86, 'NETWORK_ERROR', 'Network error between sheep'],
  [0x87, 'NO_CACHE', 'No cache object found'],
  [0x88, 'BUFFER_SMALL', 'The buffer is too small'],
  [0x89, 'FORCE_RECOVER', 'Cluster is running/halted and cannot be force recovered'],
  [0x8a, 'NO_STORE', 'Targeted backend store is not found'],
  [0x8b, 'NO_SUPPORT', 'Operation is not supported'],
  [0x8c, 'NODE_IN_RECOVERY', 'Targeted node is in recovery'],
  [0x8d, 'KILLED', 'Node is killed'],
  [0x8e, 'OID_EXIST', 'Object ID exists already'],
  [0x8f, 'AGAIN', 'Ask to try again'],
  [0x90, 'STALE_OBJ', 'Object may be stale'],
  [0x91, 'CLUSTER_ERROR', 'Cluster driver error'],
  [0x92, 'VDI_NOT_EMPTY', undefined],
  [0x93, 'NOT_FOUND', undefined],
  [0x94, 'INCOMPLETE', undefined],
  [0x95, 'COLLECTING_CINFO', undefined],
  [0x97, 'GATEWAY_MODE', 'Targeted node is gateway mode'],
  [0x98, 'INVALID_VNODES_STRATEGY', 'Invalid cluster vnodes strategy'],
  [0x99, 'NO_CHECKPOINT_ENTRY', undefined],
]
const RESULT_BY_CODE = new Map(RESULTS.map(([code, name, label]) => [code, { name, label }]))

/** The text dog prints for a result code (wire-protocol.md §6). */
export function resultLabel(code: number): string {
  return RESULT_BY_CODE.get(code)?.label ?? `Invalid error code ${code.toString(16)}`
}

export function resultName(code: number): string {
  return RESULT_BY_CODE.get(code)?.name ?? `0x${code.toString(16)}`
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
