// The HTTP side of a Prometheus endpoint, shared by sheep and sheepfs (`--metrics [HOST:]PORT`):
// serving GET /metrics from whatever renders the text (a prom-client registry in both). Anything
// else is 404; a failed render is 500 with its reason.
import http from 'node:http'
import type { ListenAddress } from './addr.js'

/** The path scraped. */
export const METRICS_PATH = '/metrics'

/** What renders the metrics: prom-client's Registry has this shape. */
export interface MetricsSource {
  metrics(): Promise<string>
  readonly contentType: string
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
