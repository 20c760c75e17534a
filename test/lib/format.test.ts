// Tests for lib/format.ts: sizes, C-exact rounding, dates, printf templates,
// raw-name escaping and the progress bar. Expected values come from the spec,
// the original's captured output and glibc printf.

import t from 'tap'

process.env.TZ = 'UTC'

const {
  escapeRawName,
  formatCtime,
  formatDateOnly,
  formatDogLogTime,
  formatEpochTime,
  formatFixed,
  formatSize,
  formatTimeOnly,
  formatVdiDate,
  padLeft,
  padRight,
  progressBar,
  progressLine,
  sprintf,
} = await import('../../lib/format.js')

const MiB = 1024 * 1024

t.test('formatSize: spec §2.4 examples', async (t) => {
  t.equal(formatSize(0, false), '0.0 MB')
  t.equal(formatSize(4 * MiB, false), '4.0 MB')
  t.equal(formatSize(12 * MiB, false), '12 MB')
  t.equal(formatSize(1024 * MiB, false), '1.0 GB')
  t.equal(formatSize(100 * MiB, false), '100 MB')
  t.equal(formatSize(2n ** 54n, false), '16 PB')
  t.equal(formatSize(178 * MiB, false), '178 MB')
})

t.test('formatSize: values of the original session', async (t) => {
  // node list "space" of the captured nodes and their sum (dog node info)
  t.equal(formatSize(12638248960n, false), '12 GB')
  t.equal(formatSize(37913849856n, false), '35 GB')
  t.equal(formatSize(16777216, false), '16 MB')
  t.equal(formatSize(8388608, false), '8.0 MB')
  t.equal(formatSize(16777216, true), '16777216')
  t.equal(formatSize(0, true), '0')
})

t.test('formatSize: rounding edges as glibc prints them', async (t) => {
  const glibc: Array<[bigint, string]> = [
    [1n, '0.0 MB'],
    [10433331n, '9.9 MB'], // 9.9499998… MB
    [10433332n, '10.0 MB'], // 9.9500007… < 10, so %.1f rounds up to 10.0
    [11010048n, '10 MB'], // exactly 10.5: ties to even
    [12058624n, '12 MB'], // exactly 11.5
    [13107200n, '12 MB'], // exactly 12.5
    [262144n, '0.2 MB'], // exactly 0.25
    [786432n, '0.8 MB'], // exactly 0.75
    [2621440n, '2.5 MB'],
    [52428n, '0.0 MB'],
    [52429n, '0.1 MB'],
    [1048575n, '1.0 MB'],
    [10485759n, '10.0 MB'],
    [10485760n, '10 MB'],
    [1073741823n, '1024 MB'],
    [1073217536n, '1024 MB'],
    [18446744073709551615n, '16 EB'],
    [1n << 60n, '1.0 EB'],
    [(1n << 63n) + 12345n, '8.0 EB'],
    [9007199254740993n, '8.0 PB'],
    [7864320n, '7.5 MB'],
    [99614720n, '95 MB'],
    [2748779069440n, '2.5 TB'],
  ]
  for (const [bytes, expected] of glibc) t.equal(formatSize(bytes, false), expected, `${bytes} bytes`)
})

t.test('formatFixed matches C %.Nf', async (t) => {
  t.equal(formatFixed(0.5, 0), '0')
  t.equal(formatFixed(1.5, 0), '2')
  t.equal(formatFixed(2.5, 0), '2')
  t.equal(formatFixed(9.95, 1), '9.9') // 9.949999999999999289…
  t.equal(formatFixed(0.05, 1), '0.1') // 0.05000000000000000277…
  t.equal(formatFixed(0.0005, 3), '0.001')
  t.equal(formatFixed(0.0015, 3), '0.002')
  t.equal(formatFixed(1.0005, 3), '1.000')
  t.equal(formatFixed(45, 1), '45.0')
  t.equal(formatFixed(-0.01, 1), '-0.0')
  t.equal(formatFixed(1e21, 0), '1000000000000000000000')
  t.equal(formatFixed(5e-324, 2), '0.00')
  t.equal(formatFixed(Infinity, 1), 'inf')
  t.equal(formatFixed(NaN, 1), 'nan')
})

t.test('dates in local time (TZ=UTC here)', async (t) => {
  const captured = 1795383814 // alpha's creation time in the original session
  t.equal(formatVdiDate(captured), '2026-11-22 21:43')
  t.equal(formatEpochTime(captured), '2026-11-22 21:43:34')
  t.equal(formatDateOnly(captured), '2026-11-22')
  t.equal(formatTimeOnly(captured), '21:43:34')
  t.equal(formatCtime(1795383813), 'Sun Nov 22 21:43:33 2026')
  t.equal(formatCtime(1578304800), 'Mon Jan  6 10:00:00 2020')
  t.equal(formatDogLogTime(1578304800), '2020 Jan 06 10:00:00 ')
  t.equal(formatVdiDate(0), '1970-01-01 00:00')
})

t.test('padding never truncates', async (t) => {
  t.equal(padLeft('7', 5), '    7')
  t.equal(padRight('alpha', 8), 'alpha   ')
  t.equal(padRight('a-very-long-name', 8), 'a-very-long-name')
  t.equal(padLeft('123456', 3), '123456')
  t.equal(padLeft('5', 8, '0'), '00000005')
})

t.test('sprintf field templates', async (t) => {
  t.equal(
    sprintf('[%-8s][%5d][%7x][%08u][%2d][%11u][%3d][%6s][%13s]', 'alpha', 0, 0xed202b, 5, 128, 4294967295, 44, '2', 'snap1'),
    '[alpha   ][    0][ ed202b][00000005][128][ 4294967295][ 44][     2][        snap1]',
  )
  // a vdi list row of the original session
  t.equal(
    sprintf('%c %-8s %5d %7s %7s %7s %s  %7x %6s %13s %3u\n', ' ', 'alpha', 0, '16 MB', '8.0 MB', '0.0 MB', '2026-11-22 21:43', 0xed202b, '2', '', 22),
    '  alpha        0   16 MB  8.0 MB  0.0 MB 2026-11-22 21:43   ed202b      2                22\n',
  )
  t.equal(sprintf('%4d   %-20s\t%2d%11u', 0, '127.0.0.1:7000', 128, 0), '   0   127.0.0.1:7000      \t128          0')
  t.equal(sprintf('%08u %8x', 1, 0xed202b), '00000001   ed202b')
  t.equal(sprintf('%016llx', 0xed202b00000000n), '00ed202b00000000')
  t.equal(sprintf('%3d%%', 44), ' 44%')
  t.equal(sprintf('%5.1f %% [', 45), ' 45.0 % [')
  t.equal(sprintf('%11.1f%%', 12.25), '       12.2%')
  t.equal(sprintf('%x', -1), 'ffffffff')
  t.equal(sprintf('%llx', -1n), 'ffffffffffffffff')
  t.equal(sprintf('%-5d|%05d|%+d', -3, -42, 7), '-3   |-0042|+7')
  t.equal(sprintf('%.3s|%*d', 'abcdef', 4, 9), 'abc|   9')
})

t.test('escapeRawName', async (t) => {
  t.equal(escapeRawName('alpha'), 'alpha')
  t.equal(escapeRawName('a b\\c\td'), 'a\\ b\\\\c\\\td')
  t.equal(escapeRawName('x\ny\rz\vw\fq'), 'x\\\ny\\\rz\\\vw\\\fq')
})

t.test('progress bar (expected lines produced by the original C code)', async (t) => {
  const half = progressBar(180 * MiB, 400 * MiB, 80, false)
  t.equal(half, ' 45.0 % [======================>                           ] 180 MB / 400 MB    ')
  t.equal(half.length, 80)
  const full = progressBar(400 * MiB, 400 * MiB, 60, false)
  t.equal(full, '100.0 % [==============================] 400 MB / 400 MB    ')
  t.equal(progressLine(400 * MiB, 400 * MiB, 60, false), `\r${full}\n`)
  t.equal(progressLine(0, 400 * MiB, 40, true), '\r  0.0 % [>         ] 0 / 419430400      ')
  // the tail is cut so that the line stays `columns` wide
  t.equal(progressBar(123456789012n, 987654321098n, 40, true), ' 12.5 % [=>        ] 123456789012 / 987 ')
  t.equal(progressBar(0, 0, 40, true), ' -nan % [==========] 0 / 0              ')
  t.equal(progressBar(1, 2, 20, true), ' 50.0 % [] 1 / 2    ')
  t.equal(progressLine(1, 2, 0, true), '')
})
