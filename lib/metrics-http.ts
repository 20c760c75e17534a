// The HTTP side of a Prometheus endpoint, shared by sheep and sheepfs (`--metrics [HOST:]PORT`):
// parsing the listen address and serving GET /metrics from whatever renders the text (a
// prom-client registry in both). Anything else is 404; a failed render is 500 with its reason.
import http from 'node:http'
import { parseAddr } from './addr.js'

/** The path scraped. */
export const METRICS_PATH = '/metrics'
const MAX_PORT = 65535

/** What renders the metrics: prom-client's Registry has this shape. */
export interface MetricsSource {
  metrics(): Promise<string>
  readonly contentType: string
}

export interface ListenAddress {
  host?: string
  port: number
}

/** `PORT`, `HOST:PORT` or `[IPV6]:PORT` (HOST an IP address) → the listen address; undefined when invalid. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(\d+)$/.exec(text)
  if (!m) return undefined
  const port = Number(m[3])
  if (port < 1 || port > MAX_PORT) return undefined
  const host = m[1] ?? m[2]
  if (host !== undefined && !parseAddr(host)) return undefined
  return host === undefined ? { port } : { host, port }
}

/** Serves `source` at http://HOST:PORT/metrics; resolves once it listens (the server does not keep the process alive). */
export async function serveMetrics(source: MetricsSource, listen: ListenAddress): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`try ${METRICS_PATH}\n`)
      return
    }
    source.metrics().then(
      (text) => res.writeHead(200, { 'content-type': source.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(e)}\n`),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  return server
}
