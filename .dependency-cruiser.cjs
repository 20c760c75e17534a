// Dependency rules checked by `npm run lint` (depcruise): the direction of every arrow in
// docs/architecture.md. Type-only imports do not count (tsPreCompilationDeps: false): the rules
// are about what loads what at run time. Violations that existed when a rule came are listed in
// .dependency-cruiser-known-violations.json (regenerate with `npm run lint:baseline` only when
// one is paid off); a new one fails the lint.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles at run time in lib/, sheep/, dog/, sheepfs/.',
      from: { path: '^(lib|sheep|dog|sheepfs)/' },
      to: { circular: true },
    },
    {
      name: 'lib-is-the-core',
      severity: 'error',
      comment: 'lib/ imports nothing above it.',
      from: { path: '^lib/' },
      to: { path: '^(sheep|dog|sheepfs|test|bench|harness)/' },
    },
    {
      name: 'programs-apart',
      severity: 'error',
      comment: 'sheep, dog and sheepfs share lib/ only; sheepfs may use dog as a library.',
      from: { path: '^(sheep|dog)/' },
      to: { path: '^(sheep|dog|sheepfs)/', pathNot: '^$1/' },
    },
    {
      name: 'sheepfs-uses-dog-as-a-library',
      severity: 'error',
      comment: "sheepfs imports dog's library surface, never its process entry or sheep.",
      from: { path: '^sheepfs/' },
      to: { path: '^(dog/main\\.ts|sheep/)' },
    },
    {
      name: 'harness-runs-programs',
      severity: 'error',
      comment: 'The process harness (tests, bench) starts the programs; it imports lib/ only, and no program imports it.',
      from: { path: '^harness/' },
      to: { path: '^(sheep|dog|sheepfs|test|bench)/' },
    },
    {
      name: 'programs-never-import-the-harness',
      severity: 'error',
      from: { path: '^(lib|sheep|dog|sheepfs)/' },
      to: { path: '^harness/' },
    },
    {
      name: 'no-test-helpers-outside-tests',
      severity: 'error',
      comment: 'Only tests import test helpers; the bench shares harness/ with them.',
      from: { path: '^(lib|sheep|dog|sheepfs|bench|harness)/' },
      to: { path: '^test/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist)/' },
    tsPreCompilationDeps: false,
    tsConfig: { fileName: 'tsconfig.json' },
  },
}
