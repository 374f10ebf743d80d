// Leads: search and filters (quality, stage, source job, tags, do-not-contact) kept in the
// address, pages by cursor ("Show more"), and a CSV export of the same filtered list.

import {
  add, fill, QUALITIES, STAGES, channelName, contactLabel, humanise, inputField, leadHref, notice, qualityBadge, selectField, time,
} from '../ui.js';

const TAG = /^[a-z0-9][a-z0-9-]*$/;

export async function render(root, ctx) {
  const { el } = ctx;
  const query = ctx.query;
  let cursor = null;

  const form = el('form', { id: 'leads-filters', class: 'filters', role: 'search', 'aria-label': 'Filter leads' },
    inputField('l-q', 'Search', { type: 'search', value: query.get('q') || '', placeholder: 'name, company or e-mail', autocomplete: 'off' }),
    selectField('l-quality', 'Quality', [['', 'Any quality'], ...QUALITIES.map((q) => [q, q])], query.get('quality')),
    selectField('l-stage', 'Stage', [['', 'Any stage'], ...STAGES.map((s) => [s, humanise(s)])], query.get('stage')),
    inputField('l-source', 'Source job', { value: query.get('source_job') || '', placeholder: 'job id', autocomplete: 'off', spellcheck: 'false' }),
    inputField('l-tags', 'Tags', { value: query.getAll('tag').join(' '), placeholder: 'vip test-drive', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': 'l-tags-hint' }),
    selectField('l-dnc', 'Do not contact', [['', 'Either'], ['true', 'Only do-not-contact'], ['false', 'Contactable only']], query.get('do_not_contact')),
    el('button', { type: 'submit' }, 'Search'),
    el('p', { id: 'l-tags-hint', class: 'muted small hint' }, 'Tags: lowercase words separated by spaces; a lead must carry all of them.'));
  const exportLink = el('a', { id: 'leads-export', class: 'button secondary', href: '/api/v1/leads/export', download: 'leads.csv' }, 'Export CSV');
  const error = el('div', { id: 'leads-error' });
  const body = el('tbody', { id: 'leads-rows' });
  const table = el('table', { class: 'table', id: 'leads-table' },
    el('caption', { class: 'sr-only' }, 'Leads, newest first'),
    el('thead', {}, el('tr', {}, ['Lead', 'Contact', 'Quality', 'Score', 'Tags', 'Source', 'Updated'].map((h) => el('th', { scope: 'col' }, h)))),
    body);
  const more = el('button', { type: 'button', class: 'secondary', id: 'leads-more', hidden: true }, 'Show more');

  add(root,
    el('div', { class: 'page-head' }, el('h1', {}, 'Leads'), exportLink),
    form, error, el('div', { class: 'table-wrap' }, table), more);

  function filters() {
    const params = new URLSearchParams();
    const q = form.querySelector('#l-q').value.trim();
    if (q) params.set('q', q);
    for (const [key, id] of [['quality', '#l-quality'], ['stage', '#l-stage'], ['do_not_contact', '#l-dnc']]) {
      const value = form.querySelector(id).value;
      if (value) params.set(key, value);
    }
    const source = form.querySelector('#l-source').value.trim();
    if (source) params.set('source_job', source);
    for (const tag of form.querySelector('#l-tags').value.toLowerCase().split(/[\s,]+/).filter(Boolean)) params.append('tag', tag);
    return params;
  }

  function row(lead) {
    return el('tr', { dataset: { id: lead.id } },
      el('th', { scope: 'row' }, el('a', { href: leadHref(lead.id) }, lead.name || lead.company || contactLabel(lead.address)),
        lead.company && lead.name ? el('div', { class: 'muted small' }, lead.company) : null,
        lead.do_not_contact ? [' ', el('span', { class: 'badge dnc' }, 'do not contact')] : null),
      el('td', {}, lead.phone || lead.email || contactLabel(lead.address), el('div', { class: 'muted small' }, channelName(lead.channel))),
      el('td', {}, qualityBadge(lead.quality)),
      el('td', { class: 'num' }, String(lead.score ?? '')),
      el('td', {}, (lead.tags || []).length ? el('ul', { class: 'tags' }, lead.tags.map((t) => el('li', { class: 'tag' }, t))) : ''),
      el('td', {}, lead.source_job_id ? el('a', { href: `#/jobs?job=${encodeURIComponent(lead.source_job_id)}` }, lead.source_job_id) : channelName(lead.channel)),
      el('td', {}, time(lead.updated_at)));
  }

  async function load(append = false) {
    const params = filters();
    const bad = params.getAll('tag').find((tag) => !TAG.test(tag));
    if (bad) {
      fill(error, notice(`"${bad}" is not a tag: use lowercase letters, digits and hyphens.`, 'error'));
      form.querySelector('#l-tags').focus();
      return;
    }
    ctx.setQuery(params);
    exportLink.href = `/api/v1/leads/export${params.toString() ? `?${params}` : ''}`;
    if (append && cursor) params.set('cursor', cursor);
    params.set('limit', '50');
    let answer;
    try {
      answer = await ctx.api('GET', `/api/v1/leads?${params}`);
    } catch (exc) {
      if (exc.status !== 401) fill(error, notice(`The leads could not be loaded: ${exc.message}`, 'error'));
      return;
    }
    fill(error);
    const rows = (answer.leads || []).map(row);
    if (append) add(body, ...rows);
    else fill(body, ...rows);
    if (!body.children.length) {
      add(body, el('tr', {}, el('td', { colspan: '7', class: 'empty' }, params.size > 1 ? 'No lead matches these filters.' : 'No leads yet.')));
    }
    cursor = answer.next_cursor || null;
    more.hidden = !cursor;
  }

  form.addEventListener('submit', (event) => { event.preventDefault(); load(false); });
  form.addEventListener('change', (event) => { if (event.target.tagName === 'SELECT') load(false); });
  more.addEventListener('click', () => load(true));
  await load(false);
}
