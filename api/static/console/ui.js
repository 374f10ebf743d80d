// Small pieces the operator pages share: formatting, badges, labelled form fields, loading
// states. Everything returns DOM built with `el` (text only).

import { add, el, fill } from './main.js';

export { add, fill };

export const STAGES = ['initial_outreach', 'awaiting_response', 'qualifying', 'objection_handling',
  'scheduling', 'nurture', 'human_handoff', 'closed'];
export const QUALITIES = ['HOT', 'WARM', 'LUKEWARM', 'COLD'];
export const CHANNELS = ['waha', 'whatsapp', 'messenger', 'chatwoot', 'email'];
export const CHANNEL_NAMES = { waha: 'WhatsApp (WAHA)', whatsapp: 'WhatsApp (Meta)', messenger: 'Messenger',
  chatwoot: 'Chatwoot', email: 'E-mail' };

export const AUTHORS = { lead: 'Lead', ai: 'AI', person: 'Person', human: 'Person', system: 'System' };

/** Who wrote a line, as the console names them (the API says `human` or `person`). */
export function authorLabel(author) {
  return AUTHORS[author] || humanise(author);
}

export function humanise(value) {
  if (value === null || value === undefined || value === '') return '—';
  return String(value).replace(/_/g, ' ');
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

export function when(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeOnly.format(date) : dateTime.format(date);
}

export function time(value) {
  return el('time', { datetime: value || null, title: value ? dateTime.format(new Date(value)) : null }, when(value));
}

export function usd(value) {
  if (value === null || value === undefined) return '—';
  const number = Number(value);
  return number < 0.01 && number > 0 ? `$${number.toFixed(4)}` : `$${number.toFixed(2)}`;
}

export function stageBadge(stage) {
  return el('span', { class: ['badge', 'stage', `stage-${stage}`], 'data-stage': stage }, humanise(stage));
}

export function qualityBadge(quality) {
  if (!quality) return null;
  return el('span', { class: ['badge', 'quality', `quality-${String(quality).toLowerCase()}`], 'data-quality': quality }, quality);
}

export function needsHumanBadge() {
  return el('span', { class: 'badge needs-human', 'data-needs-human': 'true' }, 'needs a human');
}

/** A contact as people read it: `31612345678@c.us` is +31612345678; others stay as they are. */
export function contactLabel(contact) {
  if (!contact) return '—';
  const phone = /^(\d{6,15})@(c\.us|s\.whatsapp\.net)$/.exec(contact);
  return phone ? `+${phone[1]}` : contact;
}

export function channelName(channel) {
  return CHANNEL_NAMES[channel] || humanise(channel);
}

/** A labelled <select>: options are [value, text] pairs; '' is "any". */
export function selectField(id, label, options, value, attrs = {}) {
  return el('div', { class: 'field' },
    el('label', { for: id }, label),
    el('select', { id, name: id, ...attrs },
      options.map(([optionValue, text]) => el('option', { value: optionValue, selected: optionValue === (value || '') }, text))));
}

export function inputField(id, label, attrs = {}) {
  return el('div', { class: 'field' },
    el('label', { for: id }, label),
    el('input', { id, name: id, ...attrs }));
}

export function checkboxField(id, label, checked) {
  return el('div', { class: 'field check' },
    el('input', { id, name: id, type: 'checkbox', checked: Boolean(checked) }),
    el('label', { for: id }, label));
}

export function notice(text, kind = '') {
  return el('div', { class: ['notice', kind], role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A definition list of [term, value] pairs, skipping empty values. */
export function facts(pairs) {
  const rows = pairs.filter(([, value]) => value !== null && value !== undefined && value !== '');
  if (!rows.length) return el('p', { class: 'muted' }, 'Nothing recorded.');
  return el('dl', { class: 'facts' }, rows.map(([term, value]) => [el('dt', {}, term), el('dd', {}, value)]));
}

/** Any JSON value as short readable text (fields, history details). */
export function plain(value) {
  if (value === null || value === undefined) return '—';
  if (Array.isArray(value)) return value.map(plain).join(', ');
  if (typeof value === 'object') {
    return Object.entries(value).map(([key, v]) => `${humanise(key)}: ${plain(v)}`).join('; ');
  }
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return String(value);
}

export function section(title, id, ...children) {
  const headingId = `${id}-title`;
  return el('section', { class: 'card', id, 'aria-labelledby': headingId },
    el('h2', { id: headingId }, title), ...children);
}

/** Run `fn` at most once per `ms`, trailing: a burst of live events becomes one reload. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

export function conversationHref(id) {
  return `#/conversations/${encodeURIComponent(id)}`;
}

export function leadHref(id) {
  return `#/leads/${encodeURIComponent(id)}`;
}

/** True when the keyboard event was typed into a form control (shortcuts stay out of its way). */
export function typing(event) {
  const target = event.target;
  return target instanceof HTMLElement && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
}
