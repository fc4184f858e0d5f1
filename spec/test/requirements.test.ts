// The registry rules of spec/README.md ("Requirements"), enforced on every document.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildRegistry,
  findCitations,
  parseDocument,
  REGISTRY_FILE,
  renderRegistry,
} from '../tools/requirements.ts';

describe('requirement registry', () => {
  const { requirements, problems } = buildRegistry();

  it('every document follows the requirement syntax, with unique IDs and no stray key words', () => {
    expect(problems.map((p) => `${p.document}:${p.line}: ${p.message}`)).toEqual([]);
  });

  it('spec/requirements.json is up to date (run npm run spec:requirements)', () => {
    expect(readFileSync(REGISTRY_FILE, 'utf8')).toBe(renderRegistry(requirements));
  });

  it('every ID a test cites is defined', () => {
    const ids = new Set(requirements.map((r) => r.id));
    const dangling = [...findCitations()].filter(([id]) => !ids.has(id)).map(([id, files]) => `${id} in ${files.join(', ')}`);
    expect(dangling).toEqual([]);
  });

  it('reports the requirements no test cites yet', () => {
    const cited = findCitations();
    const uncited = requirements.filter((r) => !cited.has(r.id));
    if (uncited.length) console.info(`${uncited.length} of ${requirements.length} requirements not cited by any test yet: ${uncited.map((r) => r.id).join(' ')}`);
    expect(requirements.length).toBeGreaterThan(0);
  });
});

describe('the requirement parser', () => {
  it('reads ID, level, roles, section and a text that runs over several lines', () => {
    const md = '# Framing\n\n- **[WIRE-FRAME-1]** MUST (primary, secondary): A frame MUST\n  start with a length.\n- next item\n';
    const { requirements, problems } = parseDocument('wire-protocol.md', md);
    expect(problems).toEqual([]);
    expect(requirements).toEqual([
      {
        id: 'WIRE-FRAME-1',
        level: 'MUST',
        roles: ['primary', 'secondary'],
        document: 'wire-protocol.md',
        section: 'Framing',
        line: 3,
        text: 'A frame MUST start with a length.',
      },
    ]);
  });

  it.each([
    ['a malformed ID', '**[WIRE-frame-1]** MUST (any): x MUST y', /malformed requirement ID/],
    ['a leading zero', '**[WIRE-FRAME-01]** MUST (any): x MUST y', /malformed requirement ID/],
    ['a missing level', '**[WIRE-FRAME-1]** (any): x MUST y', /expected "LEVEL/],
    ['an unknown role', '**[WIRE-FRAME-1]** MUST (client): x MUST y', /unknown role/],
    ['a level absent from the text', '**[WIRE-FRAME-1]** SHOULD (any): x must y', /does not appear/],
    ['MUST whose text says only MUST NOT', '**[WIRE-FRAME-1]** MUST (any): x MUST NOT y', /level MUST does not appear/],
    ['a level weaker than the text', '**[WIRE-FRAME-1]** MAY (any): x MAY y but MUST z', /weaker/],
    ['a key word outside a requirement', 'A sender MUST do this.', /outside a requirement/],
  ])('flags %s', (_name, md, message) => {
    const { problems } = parseDocument('x.md', md);
    expect(problems.map((p) => p.message).join('\n')).toMatch(message);
  });

  it('ignores key words in code spans and code blocks', () => {
    const md = 'Levels: `MUST` and `MAY`.\n\n```text\nMUST\n```\n';
    expect(parseDocument('x.md', md).problems).toEqual([]);
  });
});
