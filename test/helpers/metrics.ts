// Reading a daemon's Prometheus endpoint in tests (sheep --metrics): one scrape as samples.

/** The samples of one scrape of http://127.0.0.1:PORT/metrics: `name{labels}` → value. */
export async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  if (res.status !== 200) throw new Error(`scrape answered ${res.status}`)
  const samples = new Map<string, number>()
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
}
