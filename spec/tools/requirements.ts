/**
 * The requirement registry: extracts every requirement of the spec's Markdown documents
 * (see `spec/README.md`, "Requirements") and finds which tests cite them.
 *
 * Run as a script (`npm run spec:requirements`) it writes `spec/requirements.json`, prints
 * a summary, lists the IDs no test cites yet, and exits non-zero when a document breaks the
 * syntax rules.
 * @module
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SPEC_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const REPO_ROOT = path.dirname(SPEC_DIR);
export const REGISTRY_FILE = path.join(SPEC_DIR, 'requirements.json');

/** Requirement levels, strongest first. */
export const LEVELS = ['MUST', 'MUST NOT', 'SHOULD', 'SHOULD NOT', 'MAY'] as const;
export type Level = (typeof LEVELS)[number];
/** Who a requirement binds (spec/README.md, "Roles"). */
export const ROLES = ['primary', 'secondary', 'chained', 'any', 'file', 'writer', 'reader', 'iut', 'harness'] as const;
export type Role = (typeof ROLES)[number];

export const ID_PATTERN = /^[A-Z]+-[A-Z0-9]{1,8}-[1-9][0-9]*$/;

/** One entry of the registry. */
export interface Requirement {
  id: string;
  level: Level;
  roles: Role[];
  /** Document file name inside `spec/`. */
  document: string;
  /** Heading of the section the requirement stands in. */
  section: string;
  /** 1-based line of the requirement in its document. */
  line: number;
  text: string;
}

/** A rule broken by a document, with its place. */
export interface Problem {
  document: string;
  line: number;
  message: string;
}

const START = /^\s*(?:[-*]\s+|\d+\.\s+)?\*\*\[([^\]]*)\]\*\*\s*(.*)$/;
const HEAD = /^(MUST NOT|MUST|SHOULD NOT|SHOULD|MAY)\s+\(([^)]*)\):\s+(.+)$/;
const KEYWORDS = /\b(MUST|SHOULD|MAY|REQUIRED|SHALL|RECOMMENDED|OPTIONAL)\b/g;
const BREAK = /^\s*($|[-*]\s|\d+\.\s|#|```|\|)/;

const rank = (k: string) => (k.startsWith('MUST') || k === 'REQUIRED' || k.startsWith('SHALL') ? 0 : k.startsWith('SHOULD') || k === 'RECOMMENDED' ? 1 : 2);

function stripCode(line: string): string {
  return line.replace(/`[^`]*`/g, '');
}

/** Extracts the requirements of one document and the rules it breaks. */
export function parseDocument(document: string, markdown: string): { requirements: Requirement[]; problems: Problem[] } {
  const lines = markdown.split('\n');
  const requirements: Requirement[] = [];
  const problems: Problem[] = [];
  let section = '';
  let fenced = false;
  let current: Requirement | null = null;
  const problem = (line: number, message: string) => problems.push({ document, line, message });

  const finish = () => {
    if (!current) return;
    const text = current.text;
    const words = [...stripCode(text).matchAll(KEYWORDS)].map((m) => m[1]!);
    const levelWord = current.level.split(' ')[0]!;
    // the level itself, as a phrase: MUST not found inside MUST NOT
    const phrase = new RegExp(`\\b${current.level}\\b${current.level.endsWith('NOT') ? '' : '(?! NOT)'}`);
    if (!phrase.test(stripCode(text))) {
      problem(current.line, `${current.id}: level ${current.level} does not appear in its text`);
    }
    const strongest = Math.min(...words.map(rank));
    if (words.length && strongest < rank(levelWord)) {
      problem(current.line, `${current.id}: level ${current.level} is weaker than a key word in its text`);
    }
    requirements.push(current);
    current = null;
  };

  lines.forEach((raw, i) => {
    const n = i + 1;
    if (/^\s*```/.test(raw)) {
      finish();
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const heading = /^#{1,6}\s+(.*)$/.exec(raw);
    if (heading) {
      finish();
      section = heading[1]!.trim();
      return;
    }
    const start = START.exec(raw);
    if (start) {
      finish();
      const [, id, rest] = start as unknown as [string, string, string];
      if (!ID_PATTERN.test(id)) return problem(n, `malformed requirement ID ${JSON.stringify(id)}`);
      const head = HEAD.exec(rest);
      if (!head) return problem(n, `${id}: expected "LEVEL (roles): text" after the ID`);
      const [, level, roleList, text] = head as unknown as [string, Level, string, string];
      const roles = roleList.split(',').map((r) => r.trim());
      const unknown = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
      if (unknown.length) problem(n, `${id}: unknown role(s) ${unknown.join(', ')}`);
      current = { id, level, roles: roles as Role[], document, section, line: n, text: text.trim() };
      return;
    }
    if (current && !BREAK.test(raw)) {
      current.text += ` ${raw.trim()}`;
      return;
    }
    finish();
    for (const m of stripCode(raw).matchAll(KEYWORDS)) {
      problem(n, `key word ${m[1]} outside a requirement (normative sentences need an ID; quote it as code otherwise)`);
    }
  });
  finish();
  if (fenced) problems.push({ document, line: lines.length, message: 'unclosed code fence' });
  return { requirements, problems };
}

/** The spec's Markdown documents, in a stable order. */
export function specDocuments(dir = SPEC_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort((a, b) => (a === 'README.md' ? -1 : b === 'README.md' ? 1 : a.localeCompare(b)));
}

/** Extracts the whole registry and every problem, including duplicate IDs. */
export function buildRegistry(dir = SPEC_DIR): { requirements: Requirement[]; problems: Problem[] } {
  const requirements: Requirement[] = [];
  const problems: Problem[] = [];
  const seen = new Map<string, Requirement>();
  for (const document of specDocuments(dir)) {
    const r = parseDocument(document, readFileSync(path.join(dir, document), 'utf8'));
    problems.push(...r.problems);
    for (const req of r.requirements) {
      const first = seen.get(req.id);
      if (first) {
        problems.push({ document, line: req.line, message: `duplicate ID ${req.id} (first in ${first.document}:${first.line})` });
        continue;
      }
      const area = document.replace(/\.md$/, '');
      const prefix = DOCUMENT_PREFIXES[area];
      if (prefix && !req.id.startsWith(`${prefix}-`)) {
        problems.push({ document, line: req.line, message: `${req.id} does not use this document's prefix ${prefix}` });
      }
      seen.set(req.id, req);
      requirements.push(req);
    }
  }
  return { requirements, problems };
}

/** Which ID prefix each document uses. */
export const DOCUMENT_PREFIXES: Record<string, string> = {
  'wire-protocol': 'WIRE',
  'file-format': 'FS',
  deviations: 'DEV',
  conformance: 'CONF',
  fixtures: 'FIX',
  discovery: 'DISC',
};

const TEST_ROOTS = ['spec', 'reference', 'conformance', 'fixtures'];
/** A test title that starts with one or more bracketed IDs: `it('[WIRE-FRAME-1] [WIRE-FRAME-2] ...')`. */
const CITATION = /['"`]((?:\[[A-Z]+-[A-Z0-9]{1,8}-[1-9][0-9]*\]\s*)+)/g;
const CITED_ID = /\[([A-Z]+-[A-Z0-9]{1,8}-[1-9][0-9]*)\]/g;

function* testFiles(dir: string): Generator<string> {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== 'node_modules') yield* testFiles(p);
    else if (e.isFile() && (e.name.endsWith('.test.ts') || e.name.endsWith('.case.ts'))) yield p;
  }
}

/** IDs cited by test titles, with the files citing each. */
export function findCitations(root = REPO_ROOT): Map<string, string[]> {
  const cited = new Map<string, string[]>();
  for (const top of TEST_ROOTS) {
    for (const file of testFiles(path.join(root, top))) {
      const text = readFileSync(file, 'utf8');
      for (const title of text.matchAll(CITATION)) {
        for (const m of title[1]!.matchAll(CITED_ID)) {
          const list = cited.get(m[1]!) ?? [];
          const rel = path.relative(root, file);
          if (!list.includes(rel)) list.push(rel);
          cited.set(m[1]!, list);
        }
      }
    }
  }
  return cited;
}

/** The registry as written to `spec/requirements.json`. */
export function renderRegistry(requirements: Requirement[]): string {
  return `${JSON.stringify({ specVersion: specVersion(), requirements }, null, 2)}\n`;
}

/** The spec version stated in `spec/README.md`. */
export function specVersion(dir = SPEC_DIR): string {
  const m = /Spec version: \*\*([0-9.]+)\*\*/.exec(readFileSync(path.join(dir, 'README.md'), 'utf8'));
  return m ? m[1]! : 'unknown';
}

function main(): number {
  const { requirements, problems } = buildRegistry();
  writeFileSync(REGISTRY_FILE, renderRegistry(requirements));
  const cited = findCitations();
  const ids = new Set(requirements.map((r) => r.id));
  const count = (level: string) => requirements.filter((r) => r.level === level).length;
  console.log(
    `${requirements.length} requirements (${LEVELS.map((l) => `${count(l)} ${l}`).join(', ')}) ` +
      `written to ${path.relative(process.cwd(), REGISTRY_FILE)}`,
  );
  const uncited = requirements.filter((r) => !cited.has(r.id));
  const dangling = [...cited.keys()].filter((id) => !ids.has(id));
  if (uncited.length) {
    console.log(`\n${uncited.length} not cited by any test yet:`);
    for (const r of uncited) console.log(`  ${r.id.padEnd(18)} ${r.level.padEnd(10)} ${r.document} § ${r.section}`);
  }
  for (const id of dangling) problems.push({ document: '(tests)', line: 0, message: `${id} is cited by ${cited.get(id)!.join(', ')} but not defined` });
  if (problems.length) {
    console.error(`\n${problems.length} problem(s):`);
    for (const p of problems) console.error(`  ${p.document}:${p.line}: ${p.message}`);
    return 1;
  }
  console.log(`\n${requirements.length - uncited.length} of ${requirements.length} cited by tests.`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main();
