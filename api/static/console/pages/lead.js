// One lead: who they are, their conversations, what enrichment found, their CRM links and the
// history of changes (scores, stages, do-not-contact, tags — who and when). Operators may set or
// lift do-not-contact (with a reason, kept in the record).

import {
  add, fill, channelName, contactLabel, conversationHref, facts, humanise, notice, plain, qualityBadge, section,
  stageBadge, time, typing,
} from '../ui.js';

// Lead fields that came from enrichment (the CSV job's scrape and summary) rather than talk.
const ENRICHMENT_KEYS = ['company', 'website', 'company_summary', 'summary', 'emails', 'phones', 'social_links',
  'industry', 'location', 'email_subject', 'email_body'];

function historyRows(answer) {
  if (Array.isArray(answer)) return answer;
  if (answer && typeof answer === 'object') {
    for (const key of ['entries', 'history', 'changes', 'events', 'items']) if (Array.isArray(answer[key])) return answer[key];
  }
  return [];
}

function historyItem(ctx, change) {
  const { el } = ctx;
  const at = change.at || change.created_at || change.when;
  const kind = change.kind || change.type || change.what || 'change';
  const actor = change.by || change.actor || change.who;
  const by = actor && typeof actor === 'object' ? actor.name || humanise(actor.kind) : actor;
  const rest = Object.fromEntries(Object.entries(change).filter(([key]) =>
    !['at', 'created_at', 'when', 'kind', 'type', 'what', 'by', 'actor', 'who', 'id', 'conversation_id'].includes(key)));
  const summary = change.summary || change.description || plain(change.detail ?? rest);
  return el('li', { dataset: { kind } },
    el('div', { class: 'msg-meta' }, el('strong', {}, humanise(kind)), ' ', time(at), by ? ` · by ${by}` : ''),
    el('div', {}, summary));
}

export async function render(root, ctx) {
  const { el } = ctx;
  const id = ctx.params.id;
  const path = `/api/v1/leads/${encodeURIComponent(id)}`;
  let lead;
  try {
    lead = await ctx.api('GET', path);
  } catch (exc) {
    if (exc.status !== 404) throw exc;
    add(root, el('p', { class: 'crumbs' }, el('a', { href: '#/leads' }, '← Leads')),
      el('h1', {}, 'Lead not found'), notice(`There is no lead ${id} in this tenant.`, 'error'));
    return undefined;
  }

  const result = el('p', { id: 'lead-result', class: 'result', role: 'status', 'aria-live': 'polite' });
  const head = el('div', { class: 'page-head' });
  const about = el('div', { id: 'lead-about' });
  const actions = el('div', { id: 'lead-actions', class: 'actions' });
  const convList = el('div', { id: 'lead-conversations' });
  const history = el('div', { id: 'lead-history' }, el('p', { class: 'muted' }, 'Loading…'));

  function showLead() {
    fill(head,
      el('h1', { id: 'lead-title' }, lead.name || contactLabel(lead.address)),
      el('div', { class: 'badges' }, qualityBadge(lead.quality), el('span', { class: 'badge' }, `score ${lead.score}`),
        lead.do_not_contact ? el('span', { class: 'badge dnc', id: 'lead-dnc' }, 'do not contact') : null));
    const fields = lead.fields || {};
    const attributes = lead.attributes || {};
    fill(about,
      facts([
        ['Channel', channelName(lead.channel)], ['Address', lead.address], ['Phone', lead.phone], ['E-mail', lead.email],
        ['Version', String(lead.version)],
      ]),
      el('h3', {}, 'Tags'),
      lead.tags && lead.tags.length ? el('ul', { class: 'tags' }, lead.tags.map((t) => el('li', { class: 'tag' }, t)))
        : el('p', { class: 'muted' }, 'No tags.'));
    fill(enrichment,
      facts(ENRICHMENT_KEYS.filter((key) => key in fields).map((key) => [humanise(key), linkish(fields[key])])),
      el('h3', {}, 'Everything the conversations learnt'),
      facts(Object.entries(fields).filter(([key]) => !ENRICHMENT_KEYS.includes(key)).map(([key, value]) => [humanise(key), plain(value)])),
      Object.keys(attributes).length ? [el('h3', {}, 'What the CRMs get'),
        facts(Object.entries(attributes).map(([key, value]) => [humanise(key), plain(value)]))] : null);
    fill(crm, lead.crm && lead.crm.length
      ? el('ul', { class: 'plain-list' }, lead.crm.map((link) => el('li', {},
        el('strong', {}, link.name), ` (${link.kind}) `, el('span', { class: ['badge', `sync-${link.outcome || 'none'}`] }, humanise(link.outcome || 'not synced')),
        el('div', { class: 'muted small' }, link.remote_id ? `record ${link.remote_id} · ` : '', 'last synced ', time(link.last_synced_at)),
        link.reason ? el('div', { class: 'error-text small' }, link.reason) : null)))
      : el('p', { class: 'muted' }, 'Not linked to a CRM.'),
    lead.recent_syncs && lead.recent_syncs.length
      ? [el('h3', {}, 'Recent syncs'), el('ul', { class: 'plain-list small' }, lead.recent_syncs.map((run) =>
        el('li', {}, `v${run.version} `, el('span', { class: ['badge', `sync-${run.status}`] }, humanise(run.status)), ' ', time(run.at), run.reason ? ` — ${run.reason}` : '')))]
      : null);
    showConversations();
    if (ctx.canWrite) {
      fill(actions, lead.do_not_contact
        ? el('button', { type: 'button', class: 'secondary', id: 'lead-dnc-lift', onclick: () => ask(false) }, 'Lift do-not-contact')
        : el('button', { type: 'button', class: 'danger', id: 'lead-dnc-set', onclick: () => ask(true) }, 'Mark do-not-contact'));
    }
  }

  // The lead's latest conversations come with the lead (newest activity first, the inbox's
  // summaries); `conversations_total` says when there are more than the page lists.
  function showConversations() {
    const conversations = lead.conversations || [];
    const total = lead.conversations_total ?? conversations.length;
    fill(convList, conversations.length
      ? [el('ul', { class: 'plain-list' }, conversations.map((c) => el('li', { dataset: { id: c.id } },
        el('a', { href: conversationHref(c.id) }, `${channelName(c.channel)} · ${contactLabel(c.contact)}`), ' ', stageBadge(c.stage),
        el('div', { class: 'muted small' }, `${c.turns ?? 0} turns · last message `, time(c.last_message_at))))),
      total > conversations.length
        ? el('p', { class: 'muted small', id: 'lead-conversations-more' }, `The latest ${conversations.length} of ${total} conversations.`) : null]
      : el('p', { class: 'muted' }, 'No conversations.'));
  }

  function linkish(value) {
    if (typeof value === 'string' && /^https?:\/\//i.test(value)) return el('a', { href: value, target: '_blank', rel: 'noopener noreferrer' }, value);
    return plain(value);
  }

  const enrichment = el('div', { id: 'lead-enrichment' });
  const crm = el('div', { id: 'lead-crm' });
  const confirmBox = el('form', { id: 'lead-confirm', class: 'confirm', hidden: true });

  function ask(set) {
    fill(confirmBox,
      el('label', { for: 'lead-reason' }, set ? 'Why must this lead not be contacted?' : 'Why may this lead be contacted again?'),
      el('input', { id: 'lead-reason', name: 'reason', required: true, maxlength: '500' }),
      el('div', { class: 'row' },
        el('button', { type: 'submit', class: set ? 'danger' : '' }, set ? 'Mark do-not-contact' : 'Lift do-not-contact'),
        el('button', { type: 'button', class: 'secondary', onclick: () => { confirmBox.hidden = true; } }, 'Cancel')));
    confirmBox.dataset.set = String(set);
    confirmBox.hidden = false;
    confirmBox.querySelector('input').focus();
  }

  confirmBox.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') { event.stopPropagation(); confirmBox.hidden = true; actions.querySelector('button')?.focus(); }
  });
  confirmBox.addEventListener('submit', async (event) => {
    event.preventDefault();
    const reason = confirmBox.querySelector('input').value.trim();
    if (!reason) return;
    const set = confirmBox.dataset.set === 'true';
    try {
      const answer = await ctx.api('POST', `${path}/do-not-contact`,
        { do_not_contact: set, reason, by: ctx.user.name || ctx.user.email });
      lead = answer;
      result.textContent = set ? `Marked do-not-contact; ${answer.conversations_closed ?? 0} running conversation(s) closed.`
        : 'Do-not-contact lifted.';
      ctx.toast(result.textContent, 'ok');
      confirmBox.hidden = true;
      showLead();
      loadHistory();
    } catch (exc) {
      if (exc.status !== 401) {
        result.textContent = `Refused: ${exc.message}`;
        ctx.toast(result.textContent, 'error');
      }
    }
  });

  async function loadHistory() {
    try {
      const rows = historyRows(await ctx.api('GET', `${path}/history`));
      fill(history, rows.length ? el('ol', { class: 'history' }, rows.map((change) => historyItem(ctx, change)))
        : el('p', { class: 'muted' }, 'No changes recorded.'));
    } catch (exc) {
      if (exc.status === 401) return;
      fill(history, notice(exc.status === 404 || exc.status === 405
        ? 'This server keeps no history of changes yet.' : `The history could not be loaded: ${exc.message}`, exc.status === 404 ? '' : 'error'));
    }
  }

  showLead();
  add(root,
    el('p', { class: 'crumbs' }, el('a', { href: '#/leads' }, '← Leads')),
    head, result,
    ctx.canWrite ? [actions, confirmBox] : null,
    el('div', { class: 'grid-2' },
      section('About', 'lead-about-card', about),
      section('Conversations', 'lead-conversations-card', convList),
      section('Enrichment', 'lead-enrichment-card', enrichment),
      section('CRM links', 'lead-crm-card', crm),
      section('History of changes', 'lead-history-card', history)),
    el('p', { class: 'muted small' }, el('a', { href: `${path}/export`, download: `lead-${id}.json` }, 'Download everything kept about this lead (JSON)')));
  await loadHistory();
  const onKey = (event) => {
    if (event.key === 'Escape' && !typing(event) && confirmBox.hidden) ctx.navigate('#/leads');
  };
  document.addEventListener('keydown', onKey);
  return () => document.removeEventListener('keydown', onKey);
}
