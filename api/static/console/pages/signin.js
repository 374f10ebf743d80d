// Sign in with the tenant, an e-mail and a password (POST /api/v1/auth/login). The server sets
// the HttpOnly session cookie and the CSRF cookie; the shell keeps the person it answers.

import { add, inputField } from '../ui.js';

const LAST_TENANT = 'leadflow.console.tenant';

function message(exc) {
  if (exc.status === 401) return exc.detail && typeof exc.detail === 'string' ? exc.detail : 'Wrong tenant, e-mail or password.';
  if (exc.status === 429) return 'Too many failed attempts: wait a minute and try again.';
  if (exc.status === 404 || exc.status === 405) return 'This leadflow server has no console sign-in yet (no /api/v1/auth/login).';
  if (exc.status === 422) return 'Fill in the tenant, your e-mail and your password.';
  if (exc.status === 0) return 'The leadflow server cannot be reached.';
  return exc.message;
}

function safeNext(value) {
  // Only a console route: never an address elsewhere.
  return value && value.startsWith('#/') && !value.startsWith('#/signin') ? value : '#/inbox';
}

export async function render(root, ctx) {
  const { el } = ctx;
  if (ctx.user) {
    ctx.navigate(safeNext(ctx.query.get('next')));
    return;
  }
  const error = el('div', { id: 'signin-error', class: 'notice error', role: 'alert', hidden: true });
  const submit = el('button', { type: 'submit', id: 'signin-submit' }, 'Sign in');
  const form = el('form', { id: 'signin-form', class: 'stack', novalidate: true, 'aria-describedby': 'signin-error' },
    inputField('signin-tenant', 'Tenant', { required: true, autocomplete: 'organization', value: localStorage.getItem(LAST_TENANT) || '', spellcheck: 'false', autocapitalize: 'none' }),
    inputField('signin-email', 'E-mail', { type: 'email', required: true, autocomplete: 'username', spellcheck: 'false', autocapitalize: 'none' }),
    inputField('signin-password', 'Password', { type: 'password', required: true, autocomplete: 'current-password' }),
    error,
    submit);
  add(root, el('div', { class: 'signin' },
    el('h1', {}, 'Sign in to leadflow'),
    el('p', { class: 'muted' }, 'Your team\'s console: the inbox, leads, campaigns and numbers.'),
    form,
    el('p', { class: 'muted small' }, el('code', {}, 'leadflow up'), ' prints the demo admin\'s sign-in; ',
      el('code', {}, 'leadflow user create'), ' makes more people.')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const tenant = form.querySelector('#signin-tenant').value.trim();
    const email = form.querySelector('#signin-email').value.trim();
    const password = form.querySelector('#signin-password').value;
    if (!tenant || !email || !password) {
      error.textContent = 'Fill in the tenant, your e-mail and your password.';
      error.hidden = false;
      form.querySelector(!tenant ? '#signin-tenant' : !email ? '#signin-email' : '#signin-password').focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const answer = await ctx.api('POST', '/api/v1/auth/login', { tenant, email, password });
      localStorage.setItem(LAST_TENANT, tenant);
      ctx.signedIn(answer);
      ctx.navigate(safeNext(ctx.query.get('next')));
    } catch (exc) {
      error.textContent = message(exc);
      error.hidden = false;
      form.querySelector('#signin-password').select();
      form.querySelector('#signin-password').focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });
  if (ctx.startupError) {
    error.textContent = message(ctx.startupError);
    error.hidden = false;
  }
  form.querySelector(localStorage.getItem(LAST_TENANT) ? '#signin-email' : '#signin-tenant').focus();
}
