// The inbox: conversations, newest activity first, with filters kept in the address
// (`#/inbox?needs_human=true&stage=qualifying`). Live: every `conversation` event reloads the
// list with the same filters (debounced), so a new conversation appears and a changed one moves
// to the top with its new badges — the server decides what matches the filters and the order.

import {
  add, authorLabel, fill, CHANNELS, QUALITIES, STAGES, channelName, checkboxField, contactLabel, conversationHref, debounce, humanise,
  inputField, needsHumanBadge, notice, qualityBadge, selectField, stageBadge, time,
} from '../ui.js';

const PAGE = 50;
const FILTERS = ['needs_human', 'stage', 'quality', 'channel', 'campaign_id', 'q'];

function item(ctx, conv, fresh) {
  const { el } = ctx;
  const needsHuman = conv.needs_human ?? conv.stage === 'human_handoff';
  const title = conv.lead_name || contactLabel(conv.contact);
  const last = conv.last_message;
  return el('li', { class: ['conv', fresh && 'fresh', needsHuman && 'attention'], dataset: { id: conv.id, stage: conv.stage } },
    el('a', { href: conversationHref(conv.id), class: 'conv-link' },
      el('span', { class: 'conv-head' },
        el('span', { class: 'conv-name' }, title),
        el('span', { class: 'conv-when' }, time(conv.last_message_at || conv.updated_at))),
      el('span', { class: 'conv-badges' },
        needsHuman ? needsHumanBadge() : null,
        stageBadge(conv.stage),
        qualityBadge(conv.quality),
        el('span', { class: 'badge channel' }, channelName(conv.channel))),
      el('span', { class: 'conv-last' },
        last ? [el('span', { class: 'muted' }, `${authorLabel(last.role || last.author)}: `), last.text] : `${conv.turns ?? 0} turns · score ${conv.score ?? 0}`)));
}

export async function render(root, ctx) {
  const { el } = ctx;
  const query = ctx.query;
  let limit = PAGE;
  let shown = new Map(); // id -> a signature of what the row shows, to mark what changed
  let loading = null;

  const list = el('ul', { id: 'inbox-list', class: 'conv-list', 'aria-label': 'Conversations' });
  const status = el('p', { id: 'inbox-status', class: 'muted small', role: 'status', 'aria-live': 'polite' });
  const more = el('button', { type: 'button', class: 'secondary', id: 'inbox-more', hidden: true }, 'Show more');
  const campaignSelect = selectField('f-campaign', 'Campaign', [['', 'Any campaign']], query.get('campaign_id'));

  const form = el('form', { id: 'inbox-filters', class: 'filters', role: 'search', 'aria-label': 'Filter conversations' },
    checkboxField('f-needs-human', 'Needs a human', query.get('needs_human') === 'true'),
    selectField('f-stage', 'Stage', [['', 'Any stage'], ...STAGES.map((s) => [s, humanise(s)])], query.get('stage')),
    selectField('f-quality', 'Lead quality', [['', 'Any quality'], ...QUALITIES.map((q) => [q, q])], query.get('quality')),
    selectField('f-channel', 'Channel', [['', 'Any channel'], ...CHANNELS.map((c) => [c, channelName(c)])], query.get('channel')),
    campaignSelect,
    inputField('f-q', 'Search', { type: 'search', value: query.get('q') || '', placeholder: 'name, phone, e-mail or text', autocomplete: 'off' }),
    el('button', { type: 'submit', class: 'secondary' }, 'Apply'));

  add(root,
    el('div', { class: 'page-head' }, el('h1', {}, 'Inbox'), status),
    form,
    list,
    more);

  function filters() {
    const params = new URLSearchParams();
    if (form.querySelector('#f-needs-human').checked) params.set('needs_human', 'true');
    for (const [key, id] of [['stage', '#f-stage'], ['quality', '#f-quality'], ['channel', '#f-channel'], ['campaign_id', '#f-campaign']]) {
      const value = form.querySelector(id).value;
      if (value) params.set(key, value);
    }
    const q = form.querySelector('#f-q').value.trim();
    if (q) params.set('q', q);
    return params;
  }

  async function load({ live = false } = {}) {
    const params = filters();
    ctx.setQuery(params);
    params.set('limit', String(limit));
    const mine = (loading = Symbol('load'));
    let answer;
    try {
      answer = await ctx.api('GET', `/api/v1/conversations?${params}`);
    } catch (exc) {
      if (mine !== loading) return;
      if (exc.status === 401) return;
      status.textContent = '';
      fill(list, el('li', { class: 'conv-error' }, notice(`The conversations could not be loaded: ${exc.message}`, 'error')));
      return;
    }
    if (mine !== loading) return; // a newer load (new filters, a later event) wins
    const conversations = answer.conversations || [];
    // Keep keyboard focus on the same conversation when the list is rebuilt under it.
    const focusedId = document.activeElement && document.activeElement.closest
      && document.activeElement.closest('#inbox-list li[data-id]')?.dataset.id;
    const next = new Map();
    const rows = conversations.map((conv) => {
      const signature = [conv.stage, conv.needs_human, conv.last_message_at, conv.updated_at, conv.quality].join('|');
      next.set(conv.id, signature);
      return item(ctx, conv, live && shown.get(conv.id) !== signature);
    });
    shown = next;
    fill(list, ...rows);
    if (!rows.length) {
      add(list, el('li', { class: 'empty' }, filters().toString() ? 'No conversation matches these filters.' : 'No conversations yet. They appear here the moment a lead writes.'));
    }
    if (focusedId) {
      for (const row of list.querySelectorAll('li[data-id]')) {
        if (row.dataset.id === focusedId) row.querySelector('a').focus();
      }
    }
    const total = answer.total ?? conversations.length;
    more.hidden = conversations.length >= total || conversations.length < limit;
    status.textContent = `${total} conversation${total === 1 ? '' : 's'}${live ? ` · updated ${new Date().toLocaleTimeString()}` : ''}`;
  }

  const reload = debounce(() => load({ live: true }), 250);
  const refilter = debounce(() => { limit = PAGE; load(); }, 300);

  form.addEventListener('submit', (event) => { event.preventDefault(); refilter.cancel(); limit = PAGE; load(); });
  form.addEventListener('change', () => { limit = PAGE; load(); });
  form.querySelector('#f-q').addEventListener('input', refilter);
  more.addEventListener('click', () => { limit += PAGE; load(); });

  const onEvent = () => reload();
  ctx.events.addEventListener('conversation', onEvent);
  ctx.events.addEventListener('reconnected', onEvent);

  // Campaigns for the filter: optional (an older server, or a viewer without access, has none).
  ctx.api('GET', '/api/v1/campaigns').then((answer) => {
    const select = campaignSelect.querySelector('select');
    const campaigns = Array.isArray(answer) ? answer : (answer && answer.campaigns) || [];
    for (const campaign of campaigns) {
      add(select, el('option', { value: campaign.id, selected: campaign.id === query.get('campaign_id') }, campaign.name || campaign.id));
    }
  }).catch(() => { campaignSelect.querySelector('select').disabled = true; });

  await load();
  return () => {
    reload.cancel();
    refilter.cancel();
    ctx.events.removeEventListener('conversation', onEvent);
    ctx.events.removeEventListener('reconnected', onEvent);
  };
}
