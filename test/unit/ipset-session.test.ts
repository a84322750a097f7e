// The ipset session's reading of interactive mode's output (pure): prompts
// counted, error text kept, a prompt split across reads not lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitsSession, readPrompts } from '../../src/dataplane/applier/ipset-session';

test('readPrompts: prompts counted, the text between them kept, a trailing piece of a prompt held back', () => {
  assert.deepEqual(readPrompts('ipset> ipset> '), { prompts: 2, text: '', rest: '' });
  assert.deepEqual(readPrompts('ipset> ipset v7.17: The set with the given name does not exist\nipset> ip'), {
    prompts: 2,
    text: 'ipset v7.17: The set with the given name does not exist\n',
    rest: 'ip',
  });
  // The held piece completes into a prompt with the next read.
  const first = readPrompts('ipset> ips');
  const second = readPrompts(first.rest + 'et> ');
  assert.equal(first.prompts + second.prompts, 2);
  assert.equal(first.text + second.text, '');
  // Text that only ends like a prompt's start, then goes on, is text.
  assert.deepEqual(readPrompts('error: i\n'), { prompts: 0, text: 'error: i\n', rest: '' });
});

test('fitsSession: members, the creation of a set as the applier writes it, and destroy; not a refresh', () => {
  assert.equal(fitsSession('add cali4-ep-A 10.0.0.1,cali0000000001\ndel cali4-tag-A 10.0.0.2\n'), true);
  assert.equal(fitsSession(''), true);
  assert.equal(fitsSession('create cali4-ep-A hash:net,iface family inet maxelem 1048576 counters\nadd cali4-ep-A 10.0.0.1,cali0000000001\n'), true);
  assert.equal(fitsSession('create cali6-tag-A hash:net family inet6 maxelem 1048576\ndestroy cali4-tag-B\n'), true);
  assert.equal(fitsSession('create cali4-tag-A hash:net family inet hashsize 64\n'), false);
  assert.equal(fitsSession('create cali-applier-tmp hash:net family inet maxelem 1048576\nadd cali-applier-tmp 10.0.0.1\nswap cali-applier-tmp cali4-tag-A\ndestroy cali-applier-tmp\n'), false);
  assert.equal(fitsSession('add cali40masq-ipam-pools 10.0.0.0/24 nomatch\n'), false);
  assert.equal(fitsSession('swap a b\n'), false);
});
