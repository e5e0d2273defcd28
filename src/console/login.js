// The login form: an API key is exchanged once for a session cookie (POST /console/session); the
// key itself is not kept by the page.
import { session } from './api.js'
import { h } from './dom.js'

export function renderLogin ({ message, onLoggedIn }) {
  const input = h('input', { id: 'api-key', name: 'api_key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' })
  const status = h('p', { class: 'form-status', role: 'status', 'aria-live': 'polite' }, message ?? '')
  const button = h('button', { type: 'submit' }, 'Log in')
  const form = h('form', { class: 'login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Tidings console'),
    h('p', {}, 'Log in with an API key. It is exchanged for a read-only session; the page does not keep it.'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    button,
    status
  )
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    button.disabled = true
    status.textContent = 'Logging in…'
    try {
      const s = await session.login(input.value.trim())
      input.value = ''
      onLoggedIn(s)
    } catch (err) {
      status.textContent = err.status === 401 ? 'That API key is not valid.' : err.message
      status.classList.add('error')
      input.select()
    } finally {
      button.disabled = false
    }
  })
  return form
}
