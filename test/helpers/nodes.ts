// Node records for tests that need an sd_node without a running sheep: a port tells them apart
// (and is their zone), on 127.0.0.1 unless an address is given.
import { SD_ADDR_LEN, addrFromIPv4 } from '../../lib/addr.js'
import { SD_DEFAULT_VNODES } from '../../lib/proto.js'
import type { SdNode } from '../../lib/structs.js'

export function testNode(port: number, address = '127.0.0.1'): SdNode {
  return { addr: Buffer.from(addrFromIPv4(address)), port, ioAddr: Buffer.alloc(SD_ADDR_LEN), ioPort: 0, nrVnodes: SD_DEFAULT_VNODES, zone: port, space: 0n }
}
