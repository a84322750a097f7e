import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTable, renderJson, printListing, outputFormat } from '../../src/cli/output';

function capture(): NodeJS.WritableStream & { text: string } {
  const s = { text: '', write(c: string) { s.text += c; return true; } };
  return s as unknown as NodeJS.WritableStream & { text: string };
}

test('output: tables have PrettyTable frames, centred headers, no rules between rows', () => {
  const t = renderTable([{ header: 'CIDR' }, { header: 'Usage', align: 'right' }], [
    ['192.168.0.0/16', '3/65536'],
    ['10.0.0.0/8', 7],
  ]);
  assert.equal(
    t,
    [
      '+----------------+---------+',
      '|      CIDR      |  Usage  |',
      '+----------------+---------+',
      '| 192.168.0.0/16 | 3/65536 |',
      '| 10.0.0.0/8     |       7 |',
      '+----------------+---------+',
      '',
    ].join('\n'),
  );
});

test('output: multi-line cells stay in one row; an empty table is just the header', () => {
  const t = renderTable([{ header: 'Host' }, { header: 'Addresses' }], [['h1', '10.0.0.1\nfd80::1']]);
  assert.equal(t.split('\n')[3], '| h1   | 10.0.0.1  |');
  assert.equal(t.split('\n')[4], '|      | fd80::1   |');
  assert.equal(renderTable([{ header: 'Name' }], []), '+------+\n| Name |\n+------+\n+------+\n');
});

test('output: listings print JSON for scripts, or the table, or the empty text', () => {
  const recs = [{ cidr: '10.0.0.0/8', n: 1 }];
  const opts = { columns: [{ header: 'CIDR' }], row: (r: { cidr: string }) => [r.cidr], emptyText: 'No pools defined.' };
  const j = capture();
  printListing('json', recs, opts, j);
  assert.deepEqual(JSON.parse(j.text), recs);
  assert.equal(j.text, renderJson(recs));
  const e = capture();
  printListing('table', [], opts, e);
  assert.equal(e.text, 'No pools defined.\n');
  const jEmpty = capture();
  printListing('json', [], opts, jEmpty);
  assert.equal(jEmpty.text, '[]\n');
});

test('output: --output accepts table or json only', () => {
  assert.equal(outputFormat(undefined), 'table');
  assert.equal(outputFormat('json'), 'json');
  assert.throws(() => outputFormat('yaml'), /Invalid --output "yaml": expected table or json\./);
});
