// `dog vdi tree` and `dog vdi graph` (cli-and-formats §4.8, §4.9): the VDI families drawn as an
// ASCII forest (a VDI hangs under the VDI of the same name whose vid is its parent_vdi_id) and
// as a Graphviz digraph of every parent → child edge.
import { forEachVdi } from './common.js'
import { EXIT_SUCCESS, EXIT_SYSFAIL, type DogContext } from './cli.js'
import type { DogRuntime } from './runtime.js'
import { formatDateOnly, formatSize, formatTimeOnly, formatVdiDate, sprintf } from '../lib/format.js'
import { isSnapshot } from '../lib/inode.js'

const TEXT_BOLD = '\x1b[1m'
const TEXT_NORMAL = '\x1b[0m'
const WORKING_VDI_LABEL = '(you are here)'

// ---- vdi tree ----------------------------------------------------------------------------------

/** One VDI of the drawing: its label is its date (snapshots) or `(you are here)` (working VDIs). */
export interface VdiTreeEntry {
  name: string
  label: string
  vid: number
  parentVid: number
  /** Drawn in bold on a terminal: the working VDIs. */
  highlight: boolean
}

interface TreeNode extends VdiTreeEntry {
  children: TreeNode[]
}

/**
 * The forest in walk (ascending vid) order: each VDI under the VDI with its parent's vid and
 * the same name, wherever that one is in the walk; the others are roots.
 */
function buildForest(entries: readonly VdiTreeEntry[]): TreeNode[] {
  const nodes: TreeNode[] = entries.map((entry) => ({ ...entry, children: [] }))
  const byVid = new Map(nodes.map((node) => [node.vid, node]))
  const roots: TreeNode[] = []
  for (const node of nodes) {
    const parent = byVid.get(node.parentVid)
    if (parent !== undefined && parent !== node && parent.name === node.name) parent.children.push(node)
    else roots.push(node)
  }
  return roots
}

/**
 * Draws one root's tree the way the original's dump_tree does: a first child continues its
 * parent's line (`---` or `-+-`), later children start a new line indented under it with `|`
 * for ancestors that have siblings still to come.
 */
function drawTree(root: TreeNode, highlight: boolean): string {
  const out: string[] = [root.name]
  // width[l]: label width at level l (level 0: the name); more[l]: level l has siblings to come
  const width: number[] = [Buffer.byteLength(root.name)]
  const more: boolean[] = [false]
  const draw = (node: TreeNode, level: number, first: boolean, last: boolean): void => {
    if (first) {
      out.push(last ? '---' : '-+-')
    } else {
      for (let l = 0; l < level - 1; l++) out.push(' '.repeat((width[l] as number) + 1), more[l + 1] ? '| ' : '  ')
      out.push(' '.repeat((width[level - 1] as number) + 1), last ? '`-' : '|-')
    }
    out.push(highlight && node.highlight ? `${TEXT_BOLD}${node.label}${TEXT_NORMAL}` : node.label)
    if (node.children.length === 0) {
      out.push('\n')
      return
    }
    more[level] = !last
    width[level] = node.label.length
    node.children.forEach((child, i) => {
      draw(child, level + 1, i === 0, i === node.children.length - 1)
    })
  }
  draw(root, 1, true, true)
  return out.join('')
}

/** The whole `vdi tree` text for VDIs in walk order; `highlight` makes working VDIs bold. */
export function drawVdiForest(entries: readonly VdiTreeEntry[], highlight: boolean): string {
  return buildForest(entries)
    .map((root) => drawTree(root, highlight))
    .join('')
}

export async function showVdiTree(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const entries: VdiTreeEntry[] = []
  const walked = await forEachVdi(ctx, dog.daemon(ctx), ({ vid, header }) => {
    const snapshot = isSnapshot(header)
    entries.push({
      name: header.name,
      label: snapshot ? `[${formatVdiDate(Number(header.createTime >> 32n))}]` : WORKING_VDI_LABEL,
      vid,
      parentVid: header.parentVdiId,
      highlight: !snapshot,
    })
  })
  if (!walked) return EXIT_SYSFAIL
  ctx.printStdout(drawVdiForest(entries, ctx.highlight))
  return EXIT_SUCCESS
}

// ---- vdi graph ---------------------------------------------------------------------------------

const GRAPH_HEADER = 'digraph G {\n' + '  node [shape = "box", fontname = "Courier"];\n\n' + '  "0" [shape = "ellipse", label = "root"];\n\n'
const GRAPH_FOOTER = '}\n'
const GRAPH_LABEL = 'Name: %10s\\nTag:  %10x\\nSize: %10s\\nDate: %10s\\nTime: %10s'
const SNAPSHOT_NODE_END = '"\n  ];\n\n'
const WORKING_VDI_NODE_END = '",\n    color="red"\n  ];\n\n'

export async function showVdiGraph(ctx: DogContext, dog: DogRuntime): Promise<number> {
  ctx.printStdout(GRAPH_HEADER)
  const walked = await forEachVdi(ctx, dog.daemon(ctx), ({ vid, header }) => {
    const snapshot = isSnapshot(header)
    const createdAt = Number(header.createTime >> 32n)
    const label = sprintf(
      GRAPH_LABEL,
      header.name,
      snapshot ? header.snapId : 0,
      formatSize(header.vdiSize, false),
      formatDateOnly(createdAt),
      formatTimeOnly(createdAt),
    )
    ctx.printStdout(
      `  "${header.parentVdiId.toString(16)}" -> "${vid.toString(16)}";\n` +
        `  "${vid.toString(16)}" [\n    group = "${header.name}",\n    label = "${label}` +
        (snapshot ? SNAPSHOT_NODE_END : WORKING_VDI_NODE_END),
    )
  })
  if (!walked) return EXIT_SYSFAIL
  ctx.printStdout(GRAPH_FOOTER)
  return EXIT_SUCCESS
}
