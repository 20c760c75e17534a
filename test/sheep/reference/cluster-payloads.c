/* Reference bytes of cluster_info (join/accept) and vdi_op_message, from the original's headers. */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "sheepdog_proto.h"
#include "internal_proto.h"

static void mknode(struct sd_node *n, int last, int port, uint64_t space, uint16_t vnodes)
{
	memset(n, 0, sizeof(*n));
	n->nid.addr[10] = 0xff; n->nid.addr[11] = 0xff;
	n->nid.addr[12] = 10; n->nid.addr[15] = last;
	n->nid.port = port;
	n->nr_vnodes = vnodes;
	n->zone = 0x0a00000a + last;
	n->space = space;
}

static void dump(const char *name, const void *p, size_t len)
{
	FILE *f = fopen(name, "wb");
	fwrite(p, 1, len, f);
	fclose(f);
}

int main(void)
{
	size_t len = sizeof(struct cluster_info) < 128 * 1024 ? sizeof(struct cluster_info) : 128 * 1024;
	struct cluster_info *ci = calloc(1, sizeof(*ci));
	/* a joiner's sys->cinfo: formatted, epoch 7, two nodes in its epoch */
	ci->proto_ver = SD_SHEEP_PROTO_VER;
	ci->disable_recovery = 0;
	ci->epoch = 7;
	ci->ctime = 0x5f00000012345678ULL;
	ci->flags = SD_CLUSTER_FLAG_AUTO_VNODES;
	ci->nr_copies = 3;
	ci->copy_policy = 0;
	ci->status = SD_STATUS_WAIT;
	ci->block_size_shift = 22;
	strcpy((char *)ci->default_store, "tree");
	ci->nr_nodes = 2;
	mknode(&ci->nodes[0], 1, 7000, 0x123456789ULL, 128);
	mknode(&ci->nodes[1], 2, 7001, 0x223456789ULL, 128);
	dump("join.bin", ci, len);
	/* an unformatted node started with -V: no AUTO_VNODES bit, epoch 0, no nodes */
	struct cluster_info *u = calloc(1, sizeof(*u));
	u->proto_ver = SD_SHEEP_PROTO_VER;
	u->status = SD_STATUS_WAIT;
	dump("unformatted.bin", u, len);
	/* the accept: the member's view written over the join (status OK, epoch 8, three nodes) */
	struct cluster_info *m = calloc(1, sizeof(*m));
	*m = *ci;
	m->epoch = 8; m->status = SD_STATUS_OK; m->nr_nodes = 3;
	m->disable_recovery = 1;
	mknode(&m->nodes[2], 3, 7002, 0x323456789ULL, 64);
	memcpy(ci, m, offsetof(struct cluster_info, nodes) + m->nr_nodes * sizeof(struct sd_node));
	ci->proto_ver = SD_SHEEP_PROTO_VER;
	dump("accept.bin", ci, len);
	/* NOTIFY_VDI_ADD as notify_vdi_add fills it, broadcast by queue_cluster_request */
	struct vdi_op_message *msg = calloc(1, sizeof(*msg) + SD_MAX_VDI_LEN);
	/* sd_init_req: internal opcodes (>= 0x80) carry the sheep protocol version */
	msg->req.opcode = SD_OP_NOTIFY_VDI_ADD;
	msg->req.proto_ver = msg->req.opcode < 0x80 ? SD_PROTO_VER : SD_SHEEP_PROTO_VER;
	msg->req.vdi_state.old_vid = 0xabcdef;
	msg->req.vdi_state.new_vid = 0xabcdf0;
	msg->req.vdi_state.copies = 3;
	msg->req.vdi_state.set_bitmap = 0;
	msg->req.vdi_state.copy_policy = 0;
	msg->req.vdi_state.block_size_shift = 22;
	msg->rsp.result = SD_RES_SUCCESS;
	dump("notify-vdi-add.bin", msg, sizeof(*msg));
	/* NEW_VDI's UNBLOCK: request (with the name as data), the work's answer */
	memset(msg, 0, sizeof(*msg));
	msg->req.proto_ver = SD_PROTO_VER;
	msg->req.opcode = SD_OP_NEW_VDI;
	msg->req.flags = SD_FLAG_CMD_WRITE;
	msg->req.id = 5;
	msg->req.data_length = SD_MAX_VDI_LEN;
	msg->req.vdi.vdi_size = 1ULL << 30;
	msg->req.vdi.copies = 2;
	msg->req.vdi.block_size_shift = 22;
	msg->rsp.opcode = SD_OP_NEW_VDI;
	msg->rsp.id = 5;
	msg->rsp.epoch = 8;
	msg->rsp.result = SD_RES_SUCCESS;
	msg->rsp.vdi.vdi_id = 0xabcdf0;
	msg->rsp.vdi.copies = 2;
	msg->rsp.vdi.block_size_shift = 22;
	strcpy((char *)msg->data, "alpha");
	dump("new-vdi.bin", msg, sizeof(*msg) + SD_MAX_VDI_LEN);
	printf("cluster_info %zu sent %zu vdi_op_message %zu sd_req %zu\n", sizeof(struct cluster_info), len, sizeof(struct vdi_op_message), sizeof(struct sd_req));
	return 0;
}
