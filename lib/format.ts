// Text formatting shared by dog and sheepfs: C-exact number rendering (printf
// %f rounding), the human-readable size formatter, dates, printf-style field
// templates, raw-mode name escaping and the progress bar line. Pure functions.

/** Units of the size formatter, starting at MiB (spec cli-and-formats §2.4). */
const SIZE_UNITS = ['MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'] as const

const MONTH_ABBREVIATIONS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const

const WEEKDAY_ABBREVIATIONS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const

const UINT64_MODULUS = 1n << 64n
const UINT32_MODULUS = 1n << 32n

/**
 * C printf `%.<precision>f` of a double: the exact binary value rounded to
 * `precision` decimals, ties to even (glibc behaviour). NaN prints `nan`
 * (JavaScript cannot see a NaN's sign), infinities `inf` / `-inf`.
 */
export function formatFixed(value: number, precision: number): string {
  if (Number.isNaN(value)) return 'nan'
  if (!Number.isFinite(value)) return value < 0 ? '-inf' : 'inf'
  const negative = value < 0 || Object.is(value, -0)
  const { mantissa, exponent } = decomposeDouble(Math.abs(value))
  const scale = 10n ** BigInt(precision)
  let scaled: bigint
  if (exponent >= 0) {
    scaled = (mantissa << BigInt(exponent)) * scale
  } else {
    const numerator = mantissa * scale
    const shift = BigInt(-exponent)
    const quotient = numerator >> shift
    const remainder = numerator - (quotient << shift)
    const half = 1n << (shift - 1n)
    const roundUp = remainder > half || (remainder === half && (quotient & 1n) === 1n)
    scaled = roundUp ? quotient + 1n : quotient
  }
  const digits = scaled.toString().padStart(precision + 1, '0')
  const integerDigits = digits.slice(0, digits.length - precision)
  const fractionDigits = digits.slice(digits.length - precision)
  const unsigned = precision > 0 ? `${integerDigits}.${fractionDigits}` : integerDigits
  return negative ? `-${unsigned}` : unsigned
}

/** A finite non-negative double as mantissa × 2^exponent, both exact. */
function decomposeDouble(value: number): { mantissa: bigint; exponent: number } {
  const view = new DataView(new ArrayBuffer(8))
  view.setFloat64(0, value)
  const high = view.getUint32(0)
  const low = view.getUint32(4)
  const biasedExponent = (high >>> 20) & 0x7ff
  const fraction = (BigInt(high & 0xfffff) << 32n) | BigInt(low)
  if (biasedExponent === 0) return { mantissa: fraction, exponent: -1074 }
  return { mantissa: fraction | (1n << 52n), exponent: biasedExponent - 1075 }
}

/**
 * SIZE(x) of spec §2.4: bytes / 2^20 as a double, scaled by 1024 up to YB,
 * `%.0f` when ≥ 10 else `%.1f`, then a space and the unit. Raw mode prints the
 * plain decimal byte count.
 */
export function formatSize(bytes: bigint | number, raw: boolean): string {
  const exactBytes = BigInt.asUintN(64, typeof bytes === 'bigint' ? bytes : BigInt(Math.trunc(bytes)))
  if (raw) return exactBytes.toString()
  let size = Number(exactBytes) / (1024 * 1024)
  let unitIndex = 0
  while (unitIndex < SIZE_UNITS.length - 1 && size >= 1024) {
    unitIndex++
    size /= 1024
  }
  const number = size >= 10 ? formatFixed(size, 0) : formatFixed(size, 1)
  return `${number} ${SIZE_UNITS[unitIndex]}`
}

/** The broken-down local time of a Unix timestamp (seconds), as C localtime(). */
interface LocalTimeFields {
  year: number
  month: number // 0..11
  day: number
  weekday: number // 0 = Sunday
  hours: number
  minutes: number
  seconds: number
}

function localTimeFields(unixSeconds: number): LocalTimeFields {
  const date = new Date(Math.trunc(unixSeconds) * 1000)
  return {
    year: date.getFullYear(),
    month: date.getMonth(),
    day: date.getDate(),
    weekday: date.getDay(),
    hours: date.getHours(),
    minutes: date.getMinutes(),
    seconds: date.getSeconds(),
  }
}

function twoDigits(value: number): string {
  return String(value).padStart(2, '0')
}

function dateText(fields: LocalTimeFields): string {
  return `${fields.year}-${twoDigits(fields.month + 1)}-${twoDigits(fields.day)}`
}

function timeText(fields: LocalTimeFields): string {
  return `${twoDigits(fields.hours)}:${twoDigits(fields.minutes)}:${twoDigits(fields.seconds)}`
}

/** VDI creation time: local `%Y-%m-%d %H:%M` (16 characters). */
export function formatVdiDate(unixSeconds: number): string {
  const fields = localTimeFields(unixSeconds)
  return `${dateText(fields)} ${twoDigits(fields.hours)}:${twoDigits(fields.minutes)}`
}

/** Epoch times in `cluster info`: local `%Y-%m-%d %H:%M:%S`. */
export function formatEpochTime(unixSeconds: number): string {
  const fields = localTimeFields(unixSeconds)
  return `${dateText(fields)} ${timeText(fields)}`
}

/** Local `%Y-%m-%d` (vdi graph "Date:"). */
export function formatDateOnly(unixSeconds: number): string {
  return dateText(localTimeFields(unixSeconds))
}

/** Local `%H:%M:%S` (vdi graph "Time:"). */
export function formatTimeOnly(unixSeconds: number): string {
  return timeText(localTimeFields(unixSeconds))
}

/**
 * C ctime() text without its trailing newline: `Www Mmm dd hh:mm:ss yyyy`,
 * the day of month space-padded to two columns.
 */
export function formatCtime(unixSeconds: number): string {
  const fields = localTimeFields(unixSeconds)
  const weekday = WEEKDAY_ABBREVIATIONS[fields.weekday]
  const month = MONTH_ABBREVIATIONS[fields.month]
  return `${weekday} ${month} ${padLeft(String(fields.day), 2)} ${timeText(fields)} ${fields.year}`
}

/**
 * strftime `%Y %b %2d %H:%M:%S ` (glibc pads `%2d` with zeros), the time stamp
 * of the SHEEPDOG_DOG_LOG_PATH argument log; note the trailing space.
 */
export function formatDogLogTime(unixSeconds: number): string {
  const fields = localTimeFields(unixSeconds)
  return `${fields.year} ${MONTH_ABBREVIATIONS[fields.month]} ${twoDigits(fields.day)} ${timeText(fields)} `
}

/** `%<width>s`: right-aligned, never truncated. */
export function padLeft(text: string, width: number, fill = ' '): string {
  return text.length >= width ? text : fill.repeat(width - text.length) + text
}

/** `%-<width>s`: left-aligned, never truncated. */
export function padRight(text: string, width: number, fill = ' '): string {
  return text.length >= width ? text : text + fill.repeat(width - text.length)
}

/** A value a printf conversion accepts. */
export type PrintfValue = string | number | bigint | boolean

/** One parsed `%[flags][width][.precision][length]conversion` directive. */
interface PrintfDirective {
  leftAlign: boolean
  zeroPad: boolean
  plusSign: boolean
  spaceSign: boolean
  alternate: boolean
  width: number
  precision: number | undefined
  wide: boolean // an `ll`, `j`, `z`, `q` or `L` length: 64-bit unsigned wrap
  conversion: string
}

const PRINTF_DIRECTIVE = /%([-0+ #]*)(\d+|\*)?(?:\.(\d*|\*))?(hh|h|ll|l|L|q|j|z|t)?([diuxXoscfF%])/g

/**
 * A small C sprintf for the field templates of the spec: flags `-0+ #`,
 * width and precision (digits or `*`), length modifiers (accepted, `ll`/`j`/`z`
 * select 64-bit wrap of negative unsigned values), conversions
 * `d i u x X o s c f F %`. Fields are never truncated except `%.Ns`.
 */
export function sprintf(template: string, ...values: PrintfValue[]): string {
  let valueIndex = 0
  const nextValue = (): PrintfValue => {
    if (valueIndex >= values.length) throw new Error(`sprintf: too few values for ${JSON.stringify(template)}`)
    return values[valueIndex++] as PrintfValue
  }
  return template.replace(
    PRINTF_DIRECTIVE,
    (_match, flags: string, width: string | undefined, precision: string | undefined, length: string | undefined, conversion: string) => {
      if (conversion === '%') return '%'
      const directive: PrintfDirective = {
        leftAlign: flags.includes('-'),
        zeroPad: flags.includes('0'),
        plusSign: flags.includes('+'),
        spaceSign: flags.includes(' '),
        alternate: flags.includes('#'),
        width: 0,
        precision: undefined,
        wide: length === 'll' || length === 'j' || length === 'z' || length === 'q' || length === 'L',
        conversion,
      }
      if (width === '*') {
        const starWidth = Number(nextValue())
        if (starWidth < 0) directive.leftAlign = true
        directive.width = Math.abs(starWidth)
      } else if (width !== undefined) {
        directive.width = Number(width)
      }
      if (precision === '*') {
        const starPrecision = Number(nextValue())
        directive.precision = starPrecision < 0 ? undefined : starPrecision
      } else if (precision !== undefined) {
        directive.precision = precision === '' ? 0 : Number(precision)
      }
      return formatDirective(directive, nextValue())
    },
  )
}

function toBigInt(value: PrintfValue): bigint {
  if (typeof value === 'bigint') return value
  if (typeof value === 'boolean') return value ? 1n : 0n
  if (typeof value === 'number') return BigInt(Math.trunc(value))
  return BigInt(value)
}

function formatDirective(directive: PrintfDirective, value: PrintfValue): string {
  const { conversion } = directive
  if (conversion === 's') {
    let text = String(value)
    if (directive.precision !== undefined) text = text.slice(0, directive.precision)
    return alignField(text, directive, false)
  }
  if (conversion === 'c') {
    const text = typeof value === 'string' ? value.slice(0, 1) : String.fromCharCode(Number(value))
    return alignField(text, directive, false)
  }
  if (conversion === 'f' || conversion === 'F') {
    const number = Number(value)
    let text = formatFixed(number, directive.precision ?? 6)
    if (conversion === 'F') text = text.toUpperCase()
    if (!text.startsWith('-')) {
      if (directive.plusSign) text = `+${text}`
      else if (directive.spaceSign) text = ` ${text}`
    }
    if (directive.alternate && directive.precision === 0 && Number.isFinite(number)) text += '.'
    return alignField(text, directive, Number.isFinite(number))
  }
  let integer = toBigInt(value)
  let sign = ''
  let digits: string
  if (conversion === 'd' || conversion === 'i') {
    if (integer < 0n) {
      sign = '-'
      integer = -integer
    } else if (directive.plusSign) {
      sign = '+'
    } else if (directive.spaceSign) {
      sign = ' '
    }
    digits = integer.toString()
  } else {
    if (integer < 0n) integer += directive.wide || integer < -UINT32_MODULUS ? UINT64_MODULUS : UINT32_MODULUS
    const radix = conversion === 'o' ? 8 : conversion === 'u' ? 10 : 16
    digits = integer.toString(radix)
    if (conversion === 'X') digits = digits.toUpperCase()
    if (directive.alternate && integer !== 0n) {
      if (conversion === 'x') sign = '0x'
      else if (conversion === 'X') sign = '0X'
      else if (conversion === 'o') digits = `0${digits}`
    }
  }
  if (directive.precision !== undefined) {
    digits = directive.precision === 0 && integer === 0n ? '' : digits.padStart(directive.precision, '0')
  }
  const zeroPadAllowed = directive.precision === undefined
  return alignField(sign + digits, directive, zeroPadAllowed, sign.length)
}

/** Pads a converted field to its width: left, right, or with zeros after the sign. */
function alignField(text: string, directive: PrintfDirective, zeroPadAllowed: boolean, signLength = -1): string {
  if (text.length >= directive.width) return text
  if (directive.leftAlign) return padRight(text, directive.width)
  if (directive.zeroPad && zeroPadAllowed) {
    const prefixLength = signLength >= 0 ? signLength : /^[-+ ]/.test(text) ? 1 : 0
    const prefix = text.slice(0, prefixLength)
    return prefix + text.slice(prefixLength).padStart(directive.width - prefixLength, '0')
  }
  return padLeft(text, directive.width)
}

/** C isspace() in the C locale. */
const C_WHITESPACE = new Set([' ', '\t', '\n', '\v', '\f', '\r'])

/** A VDI name for `vdi list -r`: every whitespace character and backslash gets a backslash before it. */
export function escapeRawName(name: string): string {
  let escaped = ''
  for (const character of name) {
    if (C_WHITESPACE.has(character) || character === '\\') escaped += '\\'
    escaped += character
  }
  return escaped
}

/**
 * The progress bar of spec §2.6 as exactly `columns` characters (no carriage
 * return or newline): `%5.1f %% [`, a bar of `columns − 30` cells (`=` done,
 * `>` current, spaces), `] <done> / <total>` (SIZE, or plain numbers when
 * `raw`), then spaces. Like the original, the tail is cut to fit and the
 * whole line never exceeds `columns`. Empty when `columns` ≤ 0.
 */
export function progressBar(done: bigint | number, total: bigint | number, columns: number, raw: boolean): string {
  if (columns <= 0) return ''
  const doneCount = BigInt(done)
  const totalCount = BigInt(total)
  const barLength = columns - 30
  let percentage: string
  if (totalCount === 0n) {
    // C computes 0/0 = -nan on x86-64 and x/0 = inf.
    percentage = doneCount === 0n ? padLeft('-nan', 5) : padLeft('inf', 5)
  } else {
    percentage = padLeft(formatFixed((Number(doneCount) / Number(totalCount)) * 100, 1), 5)
  }
  let line = `${percentage} % [`.slice(0, columns - 1)
  for (let cell = 0; cell < barLength; cell++) {
    const cellEnd = (totalCount * BigInt(cell + 1)) / BigInt(barLength)
    const cellStart = (totalCount * BigInt(cell)) / BigInt(barLength)
    if (cellEnd <= doneCount) line += '='
    else if (cellStart <= doneCount && doneCount < cellEnd) line += '>'
    else line += ' '
  }
  const tail = `] ${formatSize(doneCount, raw)} / ${formatSize(totalCount, raw)}`
  line += tail.slice(0, Math.max(0, columns - line.length - 1))
  return padRight(line, columns)
}

/**
 * What the original writes for one progress update: a carriage return, the
 * bar of {@link progressBar}, and a newline once done equals total. Empty when
 * `columns` ≤ 0. (Callers show it only when stdout is a terminal.)
 */
export function progressLine(done: bigint | number, total: bigint | number, columns: number, raw: boolean): string {
  if (columns <= 0) return ''
  const finished = BigInt(done) === BigInt(total)
  return `\r${progressBar(done, total, columns, raw)}${finished ? '\n' : ''}`
}
