// One conversation: the transcript (who wrote each message and whether it was delivered), the
// lead's score with its explained components, fields and tags, escalations and who was told,
// the CRM sync state per CRM and the cost; and the operator's actions — take over, reply as a
// person, release to the AI, close, mark do-not-contact — each answered with the state the API
// says it left. Live: an event for this conversation reloads what the page shows (not the reply
// being typed).

import {
  add, authorLabel, fill, channelName, contactLabel, debounce, facts, humanise, leadHref, needsHumanBadge, notice,
  plain, qualityBadge, section, stageBadge, time, typing, usd,
} from '../ui.js';

function requestId() {
  const random = window.crypto && crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `console-${random}`;
}

/** The conversation as /view answers it; an older server's detail route is adapted to it. */
async function loadView(ctx, id) {
  const path = `/api/v1/conversations/${encodeURIComponent(id)}`;
  try {
    return await ctx.api('GET', `${path}/view`);
  } catch (exc) {
    if (exc.status !== 404 && exc.status !== 405) throw exc;
    let detail;
    try {
      detail = await ctx.api('GET', path);
    } catch (inner) {
      throw inner.status === 404 ? exc : inner;
    }
    return fromDetail(ctx, detail);
  }
}

async function fromDetail(ctx, detail) {
  let lead = null;
  let crm = [];
  if (detail.lead_id) {
    try {
      const found = await ctx.api('GET', `/api/v1/leads/${encodeURIComponent(detail.lead_id)}`);
      lead = found;
      crm = (found.crm || []).map((link) => ({
        integration: link.name, kind: link.kind, state: link.outcome || 'not synced',
        last_synced_at: link.last_synced_at, error: link.reason, external_id: link.remote_id, url: null,
      }));
    } catch {
      lead = null;
    }
  }
  const byModel = {};
  for (const call of detail.agent_calls || []) byModel[call.model] = (byModel[call.model] || 0) + call.cost_usd;
  return {
    conversation: { ...detail, needs_human: detail.stage === 'human_handoff', lead_id: detail.lead_id },
    transcript: (detail.transcript || []).map((line, index) => ({
      id: String(index), author: line.role === 'human' ? 'person' : line.role, text: line.text, at: line.at, delivery: null,
    })),
    lead,
    score: detail.score_detail,
    escalations: detail.escalations || [],
    crm,
    cost: { usd: detail.usage ? detail.usage.cost_usd : 0, calls: detail.usage ? detail.usage.calls : 0, by_model: byModel },
  };
}

function describe(answer) {
  if (!answer) return 'Done.';
  if (answer.status === 'pending') return 'Accepted, still under way: the page updates when it is done.';
  const stage = answer.stage ? `stage: ${humanise(answer.stage)}` : '';
  switch (answer.command) {
    case 'handoff': return `Taken over — the AI stays silent until released (${stage}).`;
    case 'release': return `Released — the AI answers the lead again (${stage}).`;
    case 'close': return `Closed (${stage}).`;
    case 'message':
      return answer.sent === false ? `Not sent: ${answer.detail || 'the channel refused it'} (${stage}).`
        : `Sent to the lead (${stage}).`;
    default: return `${humanise(answer.command)}: ${stage || 'done'}`;
  }
}

function transcriptItem(ctx, line) {
  const { el } = ctx;
  const author = line.author === 'human' ? 'person' : line.author;
  return el('li', { class: ['msg', `author-${author}`], dataset: { author, id: line.id ?? '' } },
    el('div', { class: 'msg-meta' },
      el('span', { class: 'msg-author' }, authorLabel(author)),
      time(line.at),
      line.delivery ? el('span', { class: ['badge', 'delivery', `delivery-${line.delivery}`], 'data-delivery': line.delivery }, humanise(line.delivery)) : null),
    el('p', { class: 'msg-text' }, line.text));
}

function scoreSection(ctx, view) {
  const { el } = ctx;
  const score = view.score;
  if (!score) return section('Lead score', 'conv-score', el('p', { class: 'muted' }, 'Not scored yet.'));
  return section('Lead score', 'conv-score',
    el('p', { class: 'score-total' }, el('strong', {}, String(score.total)), ' / 100 ', qualityBadge(score.quality)),
    score.components && score.components.length
      ? el('table', { class: 'table compact' },
        el('caption', { class: 'sr-only' }, 'What the score is made of'),
        el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Component'), el('th', { scope: 'col' }, 'Points'), el('th', { scope: 'col' }, 'Why'))),
        el('tbody', {}, score.components.map((c) => el('tr', {},
          el('th', { scope: 'row' }, humanise(c.name)),
          el('td', { class: 'num' }, `${c.points ?? '—'}${c.max_points !== undefined ? ` / ${c.max_points}` : ''}`),
          el('td', {}, c.reason || '')))))
      : null);
}

function leadSection(ctx, view) {
  const { el } = ctx;
  const lead = view.lead;
  if (!lead) return section('Lead', 'conv-lead', el('p', { class: 'muted' }, 'No lead recorded yet.'));
  const fields = lead.fields || {};
  return section('Lead', 'conv-lead',
    facts([
      ['Name', lead.name ? el('a', { href: leadHref(lead.id) }, lead.name) : el('a', { href: leadHref(lead.id) }, 'open the lead')],
      ['Phone', lead.phone],
      ['E-mail', lead.email],
      ['Do not contact', lead.do_not_contact ? el('span', { class: 'badge dnc' }, 'do not contact') : null],
    ]),
    el('h3', {}, 'Fields'),
    facts(Object.entries(fields).map(([key, value]) => [humanise(key), plain(value)])),
    el('h3', {}, 'Tags'),
    lead.tags && lead.tags.length
      ? el('ul', { class: 'tags', 'aria-label': 'Tags' }, lead.tags.map((tag) => el('li', { class: 'tag' }, tag)))
      : el('p', { class: 'muted' }, 'No tags.'));
}

function escalationsSection(ctx, view) {
  const { el } = ctx;
  const items = view.escalations || [];
  return section('Escalations', 'conv-escalations', items.length
    ? el('ul', { class: 'plain-list' }, items.map((e) => el('li', {},
      el('strong', {}, humanise(e.rule)), ' — ', e.reason || '',
      el('div', { class: 'muted small' }, 'Notified: ', e.notified && e.notified.length ? e.notified.join(', ') : 'nobody', ' · ', time(e.created_at),
        e.resolved_at ? [' · resolved ', time(e.resolved_at)] : ' · open'))))
    : el('p', { class: 'muted' }, 'None.'));
}

function crmSection(ctx, view) {
  const { el } = ctx;
  const rows = view.crm || [];
  return section('CRM sync', 'conv-crm', rows.length
    ? el('ul', { class: 'plain-list' }, rows.map((c) => el('li', { dataset: { crm: c.kind || '' } },
      el('strong', {}, c.integration || c.kind), ' ', el('span', { class: ['badge', `sync-${c.state}`] }, humanise(c.state)),
      el('div', { class: 'muted small' }, c.kind ? `${c.kind} · ` : '', 'last synced ', time(c.last_synced_at),
        c.external_id ? [' · ', c.url ? el('a', { href: c.url, target: '_blank', rel: 'noopener noreferrer' }, c.external_id) : c.external_id] : null),
      c.error ? el('div', { class: 'error-text small' }, c.error) : null)))
    : el('p', { class: 'muted' }, 'Not synced to a CRM.'));
}

function costSection(ctx, view) {
  const { el } = ctx;
  const cost = view.cost || {};
  const models = Object.entries(cost.by_model || {});
  return section('Cost', 'conv-cost',
    el('p', {}, el('strong', {}, usd(cost.usd)), ` in ${cost.calls ?? 0} model call${cost.calls === 1 ? '' : 's'}`),
    models.length ? el('ul', { class: 'plain-list small' }, models.map(([model, value]) => el('li', {}, `${model}: ${usd(value)}`))) : null);
}

export async function render(root, ctx) {
  const { el } = ctx;
  const id = ctx.params.id;
  const api = `/api/v1/conversations/${encodeURIComponent(id)}`;
  let view = null;

  const heading = el('h1', { id: 'conv-title' }, id);
  const badges = el('div', { id: 'conv-badges', class: 'badges' });
  const result = el('p', { id: 'conv-result', class: 'result', role: 'status', 'aria-live': 'polite' });
  const transcript = el('ol', { id: 'transcript', class: 'transcript', 'aria-label': 'Transcript' });
  const side = el('aside', { class: 'conv-side', 'aria-label': 'About this lead' });
  const actions = el('div', { id: 'conv-actions', class: 'actions', hidden: !ctx.canWrite });
  const replyBox = el('form', { id: 'reply-form', class: 'reply', hidden: true },
    el('label', { for: 'reply-text' }, `Reply as ${ctx.user ? ctx.user.name || ctx.user.email : 'a person'}`),
    el('textarea', { id: 'reply-text', name: 'text', rows: '3', maxlength: '4096', required: true,
      'aria-describedby': 'reply-hint' }),
    el('div', { class: 'row' },
      el('button', { type: 'submit', id: 'reply-send' }, 'Send'),
      el('span', { id: 'reply-hint', class: 'muted small' }, 'Ctrl+Enter sends. The lead gets it on their channel.')));
  const confirmBox = el('form', { id: 'confirm-form', class: 'confirm', hidden: true });

  add(root,
    el('p', { class: 'crumbs' }, el('a', { href: '#/inbox' }, '← Inbox')),
    el('div', { class: 'page-head' }, heading, badges),
    result,
    el('div', { class: 'conv-layout' },
      el('div', { class: 'conv-main' },
        el('section', { class: 'card', 'aria-labelledby': 'transcript-title' },
          el('h2', { id: 'transcript-title' }, 'Transcript'), transcript),
        ctx.canWrite ? el('section', { class: 'card', 'aria-labelledby': 'actions-title' },
          el('h2', { id: 'actions-title' }, 'Actions'), actions, confirmBox, replyBox) : null),
      side));

  function show(answer) {
    view = answer;
    const conv = view.conversation || {};
    const lead = view.lead;
    const needsHuman = conv.needs_human ?? conv.stage === 'human_handoff';
    heading.textContent = (lead && lead.name) || conv.lead_name || contactLabel(conv.contact || id);
    fill(badges,
      needsHuman ? needsHumanBadge() : null,
      stageBadge(conv.stage),
      qualityBadge(conv.quality),
      el('span', { class: 'badge channel' }, channelName(conv.channel)),
      el('span', { class: 'muted small' }, conv.contact || ''));
    badges.dataset.stage = conv.stage || '';
    const stuckToBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40;
    const lines = view.transcript || [];
    fill(transcript, ...lines.map((line) => transcriptItem(ctx, line)));
    if (!lines.length) add(transcript, el('li', { class: 'muted' }, 'No messages yet.'));
    if (view.transcript_truncated) {
      transcript.prepend(el('li', { class: 'muted small' }, `Older messages are not shown: the latest ${lines.length} are.`));
    }
    if (stuckToBottom) transcript.scrollTop = transcript.scrollHeight;
    fill(side, leadSection(ctx, view), scoreSection(ctx, view), escalationsSection(ctx, view),
      crmSection(ctx, view), costSection(ctx, view));
    if (ctx.canWrite) showActions(conv, lead, needsHuman);
  }

  function showActions(conv, lead, needsHuman) {
    const closed = conv.stage === 'closed';
    const dnc = Boolean(lead && lead.do_not_contact);
    fill(actions,
      !closed && !needsHuman ? el('button', { type: 'button', id: 'act-takeover', onclick: () => command('handoff', { reason: `taken over by ${who()}` }) }, 'Take over') : null,
      !closed && needsHuman ? el('button', { type: 'button', id: 'act-release', onclick: () => command('release', {}) }, 'Release to the AI') : null,
      !closed ? el('button', { type: 'button', class: 'secondary', id: 'act-close', onclick: () => ask('close') }, 'Close') : null,
      lead && !dnc ? el('button', { type: 'button', class: 'danger', id: 'act-dnc', onclick: () => ask('dnc') }, 'Mark do-not-contact') : null,
      closed ? el('p', { class: 'muted' }, 'Closed: the lead\'s next message opens it again.') : null);
    replyBox.hidden = closed || dnc;
    const hint = replyBox.querySelector('#reply-hint');
    hint.textContent = needsHuman ? 'Ctrl+Enter sends. The lead gets it on their channel.'
      : 'The AI is answering this lead: take over first so it stays silent. Ctrl+Enter sends.';
  }

  function who() {
    return ctx.user ? ctx.user.name || ctx.user.email : 'an operator';
  }

  function busy(on) {
    for (const button of root.querySelectorAll('#conv-actions button, #reply-form button, #confirm-form button')) button.disabled = on;
  }

  async function command(name, body) {
    busy(true);
    result.textContent = 'Working…';
    try {
      const answer = await ctx.api('POST', `${api}/${name}`, { ...body, request_id: requestId() });
      result.textContent = describe(answer);
      result.dataset.outcome = answer.status === 'pending' ? 'pending' : answer.sent === false ? 'failed' : 'done';
      // The result line above says it (and is announced); a toast only for what went wrong.
      if (answer.sent === false) ctx.toast(describe(answer), 'error');
      return answer;
    } catch (exc) {
      if (exc.status === 401) return null;
      result.textContent = `${humanise(name)} refused: ${exc.message}`;
      result.dataset.outcome = 'failed';
      ctx.toast(result.textContent, 'error');
      return null;
    } finally {
      busy(false);
      await refresh();
      keepFocus();
    }
  }

  function keepFocus() {
    // The pressed button may be gone (Take over becomes Release): keyboard users continue in
    // the reply box, or on the first action, instead of at the top of the page.
    const active = document.activeElement;
    if (active && active !== document.body && document.body.contains(active)) return;
    const next = !replyBox.hidden ? replyBox.querySelector('#reply-text') : actions.querySelector('button');
    if (next) next.focus();
  }

  function ask(what) {
    const isClose = what === 'close';
    fill(confirmBox,
      el('label', { for: 'confirm-reason' }, isClose ? 'Why close it? (kept in the record)' : 'Why must this lead not be contacted? (kept in the record)'),
      el('input', { id: 'confirm-reason', name: 'reason', required: true, maxlength: '500',
        value: isClose ? 'closed by an operator' : '' }),
      el('div', { class: 'row' },
        el('button', { type: 'submit', id: 'confirm-yes', class: isClose ? '' : 'danger' }, isClose ? 'Close the conversation' : 'Mark do-not-contact'),
        el('button', { type: 'button', class: 'secondary', id: 'confirm-no', onclick: hideConfirm }, 'Cancel')));
    confirmBox.dataset.what = what;
    confirmBox.hidden = false;
    confirmBox.querySelector('#confirm-reason').focus();
  }

  function hideConfirm() {
    confirmBox.hidden = true;
    fill(confirmBox);
    const back = actions.querySelector('button');
    if (back) back.focus();
  }

  confirmBox.addEventListener('submit', async (event) => {
    event.preventDefault();
    const reason = confirmBox.querySelector('#confirm-reason').value.trim();
    if (!reason) {
      confirmBox.querySelector('#confirm-reason').focus();
      return;
    }
    const what = confirmBox.dataset.what;
    confirmBox.hidden = true;
    if (what === 'close') {
      await command('close', { reason });
    } else {
      await doNotContact(reason);
    }
  });

  confirmBox.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      hideConfirm();
    }
  });

  async function doNotContact(reason) {
    const lead = view && view.lead;
    if (!lead) return;
    busy(true);
    try {
      const answer = await ctx.api('POST', `/api/v1/leads/${encodeURIComponent(lead.id)}/do-not-contact`,
        { do_not_contact: true, reason, by: who() });
      result.textContent = `Marked do-not-contact${answer.changed === false ? ' (it already was)' : ''}; `
        + `${answer.conversations_closed ?? 0} running conversation(s) closed.`;
      result.dataset.outcome = 'done';
    } catch (exc) {
      if (exc.status !== 401) {
        result.textContent = `Do-not-contact refused: ${exc.message}`;
        result.dataset.outcome = 'failed';
        ctx.toast(result.textContent, 'error');
      }
    } finally {
      busy(false);
      await refresh();
      keepFocus();
    }
  }

  replyBox.addEventListener('submit', async (event) => {
    event.preventDefault();
    const box = replyBox.querySelector('#reply-text');
    const text = box.value.trim();
    if (!text) {
      box.focus();
      return;
    }
    const answer = await command('messages', { text, author: who() });
    if (answer && answer.sent !== false) box.value = '';
    box.focus();
  });
  replyBox.querySelector('#reply-text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      replyBox.requestSubmit();
    }
  });

  async function refresh() {
    try {
      show(await loadView(ctx, id));
    } catch (exc) {
      if (exc.status === 401) return;
      if (!view) throw exc;
      ctx.toast(`Could not refresh the conversation: ${exc.message}`, 'error');
    }
  }

  const live = debounce(refresh, 200);
  const onEvent = (event) => {
    if (!event.detail || event.detail.id === id) live();
  };
  const onKey = (event) => {
    // Escape leaves for the inbox (not while typing, and not while a confirmation is open).
    if (event.key === 'Escape' && !typing(event) && confirmBox.hidden) ctx.navigate('#/inbox');
  };
  ctx.events.addEventListener('conversation', onEvent);
  ctx.events.addEventListener('reconnected', onEvent);
  document.addEventListener('keydown', onKey);

  const cleanup = () => {
    live.cancel();
    ctx.events.removeEventListener('conversation', onEvent);
    ctx.events.removeEventListener('reconnected', onEvent);
    document.removeEventListener('keydown', onKey);
  };
  try {
    show(await loadView(ctx, id));
  } catch (exc) {
    if (exc.status !== 404) {
      cleanup();
      throw exc;
    }
    fill(root, el('p', { class: 'crumbs' }, el('a', { href: '#/inbox' }, '← Inbox')),
      el('h1', {}, 'Conversation not found'),
      notice(`There is no conversation ${id} in this tenant.`, 'error'));
  }
  return cleanup;
}
