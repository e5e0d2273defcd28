/* global location, history */
// The console's shell: checks the session, shows the login or the page named by the URL hash
// (#/feed, #/search, #/message/<sid>, #/charts, #/webhooks), and logs out.
import { session, setUnauthorizedHandler } from './api.js'
import { h, replace } from './dom.js'
import { renderLogin } from './login.js'
import { renderFeed } from './feed.js'
import { renderSearch } from './search.js'
import { renderMessage } from './message.js'
import { renderCharts } from './charts.js'
import { renderWebhooks } from './webhooks.js'

const main = document.getElementById('main')
const nav = document.getElementById('nav')
const who = document.getElementById('who')
const logoutButton = document.getElementById('logout')

const pages = {
  feed: renderFeed,
  search: renderSearch,
  message: renderMessage,
  charts: renderCharts,
  webhooks: renderWebhooks
}

let loggedIn = false
/** What the current page wants to stop (the live feed's EventSource) when leaving it. */
let cleanup = () => {}

function parseHash () {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?')
  const [page, ...rest] = path.split('/')
  return { page: page || 'feed', arg: rest.map(decodeURIComponent).join('/'), params: new URLSearchParams(query) }
}

function showLogin (message) {
  loggedIn = false
  cleanup(); cleanup = () => {}
  nav.hidden = true
  logoutButton.hidden = true
  who.textContent = ''
  replace(main, renderLogin({ message, onLoggedIn: (s) => { showSession(s); route() } }))
  main.querySelector('input')?.focus()
}

function showSession (s) {
  loggedIn = true
  nav.hidden = false
  logoutButton.hidden = false
  who.textContent = `key: ${s.api_key_name}`
}

function route () {
  if (!loggedIn) return
  cleanup(); cleanup = () => {}
  const { page, arg, params } = parseHash()
  const render = pages[page] ?? pages.feed
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${page}`) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  const container = h('div', { class: 'page' })
  replace(main, container)
  const result = render(container, arg, params)
  if (typeof result === 'function') cleanup = result
  main.focus({ preventScroll: true })
}

setUnauthorizedHandler(() => { if (loggedIn) showLogin('Your session has ended; log in again.') })
window.addEventListener('hashchange', route)
logoutButton.addEventListener('click', async () => {
  try { await session.logout() } catch {}
  history.replaceState(null, '', '#/feed')
  showLogin('Logged out.')
})

try {
  showSession(await session.current())
  route()
} catch {
  showLogin()
}
