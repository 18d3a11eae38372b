// End-to-end tests of the customer widget (/ and /widget.js) and the agent console
// (/agent/) in Debian's headless Chromium, driven by playwright-core. Started by
// tests/browser.rs with a running Warmline:
//   WARMLINE_URL       http://127.0.0.1:PORT
//   WARMLINE_TOKENS    {"alice": "<jwt>", "bob": "<jwt>"}
//   WARMLINE_ARTIFACTS where screenshots go
//   CHROMIUM           the browser (default /usr/bin/chromium)
// Prints one line `RESULT {json}`: the messages sent (the Rust test checks the store
// holds each exactly once), the screenshots, the widget's gzipped size and its time
// to interactive. Exits non-zero at the first failed check.
import { chromium } from 'playwright-core';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { startProxy } from './proxy.mjs';

const BASE = process.env.WARMLINE_URL;
const TOKENS = JSON.parse(process.env.WARMLINE_TOKENS || '{}');
const ARTIFACTS = process.env.WARMLINE_ARTIFACTS || '.';
const WAIT = 15_000;

const sent = [];        // { role, text }: every message a person typed and sent
const screenshots = [];
const pages = [];       // for screenshots on failure
let dialogs = [];       // any alert() is a failure (script injection)

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    for (const [i, p] of pages.entries()) {
      await p.screenshot({ path: path.join(ARTIFACTS, `failure-${i}.png`), fullPage: true }).catch(() => {});
    }
    throw e;
  }
}

async function shot(page, name) {
  const file = path.join(ARTIFACTS, name + '.png');
  await page.screenshot({ path: file });
  screenshots.push(file);
}

async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => console.log('page error:', e.message));
  pages.push(page);
  return page;
}

// ---- the customer's side: the widget on the demo page ----

async function openWidget(page, base = BASE) {
  await page.addInitScript(() => {
    window.addEventListener('warmline:ready', (e) => { window.__wlReady = e.detail && e.detail.ms; });
  });
  await page.goto(base + '/');
  await page.waitForFunction(() => window.__wlReady != null, null, { timeout: WAIT });
  const tti = await page.evaluate(() => window.__wlReady);
  await page.getByTestId('wl-launcher').click();
  await page.getByTestId('wl-panel').waitFor({ state: 'visible' });
  return tti;
}

async function startChat(page, name, first) {
  await page.getByTestId('wl-name').fill(name);
  await page.getByTestId('wl-first-message').fill(first);
  await page.getByTestId('wl-start').click();
  sent.push({ role: 'customer', text: first });
  await widgetMessage(page, first);
}

function widgetMessages(page) {
  return page.getByTestId('wl-transcript').getByTestId('wl-msg');
}

// Waits until the widget shows `text` (exactly once) and returns its item.
async function widgetMessage(page, text) {
  const item = widgetMessages(page).filter({ has: page.locator('.text', { hasText: text }) });
  await item.first().waitFor({ timeout: WAIT });
  return item;
}

async function customerSays(page, text) {
  await page.getByTestId('wl-input').fill(text);
  await page.getByTestId('wl-input').press('Enter');
  sent.push({ role: 'customer', text });
}

// ---- the agent's side: the console ----

async function signIn(page, agent) {
  await page.goto(BASE + '/agent/?token=' + encodeURIComponent(TOKENS[agent]));
  await page.getByTestId('agent-name').filter({ hasText: /\S/ }).waitFor({ timeout: WAIT });
}

async function setAvailable(page) {
  const toggle = page.getByTestId('availability');
  const tag = await toggle.evaluate((e) => e.tagName);
  if (tag === 'SELECT') await toggle.selectOption('available');
  else await toggle.click();
  await page.getByTestId('status').filter({ hasText: /available/i }).waitFor({ timeout: WAIT });
}

async function acceptOffer(page, shotName) {
  const offer = page.getByTestId('offer').first();
  await offer.waitFor({ timeout: WAIT });
  if (shotName) await shot(page, shotName);
  const text = async (id) => (await offer.getByTestId(id).count()) ? offer.getByTestId(id).first().textContent() : '';
  const seen = {
    reason: await text('offer-reason'), note: await text('offer-note'), preview: await text('offer-preview'),
    customer: await text('offer-customer'), text: await offer.textContent(),
  };
  await offer.getByTestId('accept').click();
  await offer.waitFor({ state: 'detached', timeout: WAIT });
  return seen;
}

function agentTranscript(page) {
  return page.getByTestId('transcript');
}

async function agentSays(page, text) {
  await page.getByTestId('message-input').fill(text);
  await page.getByTestId('send').click();
  sent.push({ role: 'agent', text });
  await agentTranscript(page).getByText(text, { exact: true }).waitFor({ timeout: WAIT });
}

async function countText(locator, text) {
  return locator.getByText(text, { exact: true }).count();
}

// ---- issue 20: the live mood follows what the customer just said; the widget offers the
// last conversation after a reload, and every button in it has a name ----

// The console's mood once it is about the customer message `text` (by its seq).
async function moodAbout(page, text) {
  const li = agentTranscript(page).locator('li[data-seq]', { has: page.getByText(text, { exact: true }) }).last();
  await li.waitFor({ timeout: WAIT });
  const seq = await li.getAttribute('data-seq');
  const mood = page.locator(`[data-testid="sentiment"][data-seq="${seq}"]`);
  await mood.waitFor({ timeout: WAIT });
  return mood;
}

// Every button the customer can reach has an accessible name; icon-only ones also a tooltip.
async function widgetButtonsNamed(page, where) {
  const all = page.getByTestId('wl-panel').getByRole('button');
  const named = page.getByTestId('wl-panel').getByRole('button', { name: /\S/ });
  const n = await all.count();
  check(n > 0 && n === await named.count(), `${where}: ${n} buttons, ${await named.count()} with a name`);
  const unlabelled = await page.getByTestId('wl-panel').evaluate((panel) => [...panel.querySelectorAll('button')]
    .filter((b) => b.offsetParent !== null && !b.textContent.trim() && !(b.title && b.getAttribute('aria-label')))
    .map((b) => b.dataset.testid || b.outerHTML.slice(0, 60)));
  check(unlabelled.length === 0, `${where}: icon buttons without a tooltip and a label: ${unlabelled.join(', ')}`);
  const launcher = page.getByTestId('wl-launcher');
  check(!!(await launcher.getAttribute('title')) && !!(await launcher.getAttribute('aria-label')), 'the launcher has a tooltip and a label');
}

async function moodAndContinueSteps(browser, alice) {
  const riley = await newPage(browser);
  const opening = 'This is absolutely ridiculous... Terrible service.';
  const furious = 'I am furious. Nobody answers my emails and I want a refund NOW';
  const worst = 'This is the worst shop I have ever used';
  const calm = 'thanks, that fixed it';

  await step('an angry customer reads Unhappy in the console, from what they said while waiting', async () => {
    await openWidget(riley);
    await startChat(riley, 'Riley Sutton', opening);
    await customerSays(riley, furious);
    await (await widgetMessage(riley, furious)).and(riley.locator('[data-state="sent"]')).first().waitFor({ timeout: WAIT });
    await acceptOffer(alice);
    await alice.getByTestId('conversation-title').filter({ hasText: 'Riley Sutton' }).waitFor({ timeout: WAIT });
    let mood = await moodAbout(alice, furious);
    check(await mood.getAttribute('data-mood') === 'negative', 'furious, waiting: ' + await mood.getAttribute('title'));
    check(await mood.getByTestId('mood-label').textContent() === 'Unhappy', 'label: ' + await mood.textContent());

    await customerSays(riley, worst);
    mood = await moodAbout(alice, worst);
    check(await mood.getAttribute('data-mood') === 'negative', 'the worst shop: ' + await mood.getAttribute('title'));
    const text = await mood.textContent();
    check(/Unhappy/.test(text) && !/Neutral|Happy/.test(text), 'the mood reads ' + text);
    check(await mood.getAttribute('data-direction') !== 'improving', 'angry twice is not improving: ' + text);
    await shot(alice, 'console-angry-mood');
  });

  await step('the customer calms down: Happy, improving', async () => {
    await agentSays(alice, 'I am sorry. I have refunded your order now.');
    await widgetMessage(riley, 'I am sorry. I have refunded your order now.');
    await customerSays(riley, calm);
    const mood = await moodAbout(alice, calm);
    check(await mood.getAttribute('data-mood') === 'positive', 'thanks: ' + await mood.getAttribute('title'));
    check(await mood.getAttribute('data-direction') === 'improving', 'angry then calm: ' + await mood.textContent());
    check(/improving/.test(await mood.getByTestId('mood-trend').textContent()), 'the trend says so');
  });

  await step('after a reload the widget offers the last conversation; continuing shows it and goes on', async () => {
    await riley.getByTestId('wl-end').click();
    await riley.getByTestId('wl-closed').waitFor({ state: 'visible', timeout: WAIT });
    await riley.reload();
    await riley.waitForFunction(() => window.__wlReady != null, null, { timeout: WAIT });
    if (!(await riley.getByTestId('wl-panel').isVisible())) await riley.getByTestId('wl-launcher').click();
    const cont = riley.getByRole('button', { name: 'Continue your last conversation' });
    await cont.waitFor({ timeout: WAIT });
    check(await riley.getByTestId('wl-prechat').isVisible(), 'the pre-chat form is there too');
    await widgetButtonsNamed(riley, 'the pre-chat form');
    await riley.getByTestId('wl-panel').evaluate((el) => Promise.all(el.getAnimations().map((a) => a.finished)));
    await shot(riley, 'widget-continue');

    await cont.click();
    for (const said of [opening, furious, worst, calm, 'I am sorry. I have refunded your order now.']) await widgetMessage(riley, said);
    await riley.getByTestId('wl-input').waitFor({ state: 'visible', timeout: WAIT });
    await widgetButtonsNamed(riley, 'the continued conversation');
    const more = 'One more thing: can I have the invoice too?';
    await customerSays(riley, more);
    await (await widgetMessage(riley, more)).and(riley.locator('[data-state="sent"]')).first().waitFor({ timeout: WAIT });
    check(await countText(widgetMessages(riley), worst) === 1, 'the earlier transcript stays above, once');
    await shot(riley, 'widget-continued');
    await acceptOffer(alice); // the new conversation, with the earlier one as a repeat contact
    await agentTranscript(alice).getByText(more, { exact: true }).waitFor({ timeout: WAIT });
    // Alice is at her capacity of three now: she answers and closes it.
    await agentSays(alice, 'Of course, it is on its way to your inbox.');
    await alice.getByTestId('close').click();
    await riley.getByTestId('wl-closed').waitFor({ state: 'visible', timeout: WAIT });
  });
}

// A customer id on the wire is 32 hex digits: people should never have to read one.
const HEX_ID = /\b[0-9a-f]{32}\b/i;

// Opens the folded transfer form of the selected conversation.
async function openTransfer(page) {
  if (!(await page.getByTestId('transfer-form').isVisible())) await page.getByTestId('transfer-toggle').click();
  await page.getByTestId('transfer-form').waitFor({ state: 'visible', timeout: WAIT });
}

// The conversation's side cards as a person reads them (text of each; '' when absent).
async function infoCards(page) {
  const card = async (id) => {
    const loc = page.getByTestId('info').getByTestId(id);
    return (await loc.count()) && (await loc.first().isVisible()) ? (await loc.first().innerText()).trim() : '';
  };
  return { context: await card('context'), history: await card('history'), repeat: await card('repeat') };
}

// ---- the scenarios ----

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const result = { sent, screenshots };
  try {
    await step('the widget is small', async () => {
      const res = await fetch(BASE + '/widget.js');
      check(res.ok, 'GET /widget.js: ' + res.status);
      const body = Buffer.from(await res.arrayBuffer());
      result.widget_bytes = body.length;
      result.widget_gzip_bytes = gzipSync(body, { level: 9 }).length;
      check(result.widget_gzip_bytes < 50 * 1024, `widget.js is ${result.widget_gzip_bytes} bytes gzipped`);
    });

    const alice = await newPage(browser);
    const bob = await newPage(browser);
    const customer = await newPage(browser);

    await step('agents sign in; alice goes available, bob stays away', async () => {
      await signIn(alice, 'alice');
      await signIn(bob, 'bob');
      await setAvailable(alice);
    });

    const xss = '<img src=x onerror=alert(1)> is what my screen shows';
    await step('a customer starts a chat in the widget and alice takes it', async () => {
      result.time_to_interactive_ms = await openWidget(customer);
      await startChat(customer, 'Dana Whitfield', 'Hi, my order 4411 never arrived');
      const offer = await acceptOffer(alice);
      check(offer.text.includes('Dana Whitfield'), 'the offer names the customer as they gave their name: ' + offer.text);
      check(offer.preview.includes('Hi, my order 4411 never arrived'), 'the offer shows what the customer wrote: ' + JSON.stringify(offer.preview));
      check(!HEX_ID.test(offer.text), 'the offer shows no raw customer id: ' + offer.text);
      await alice.getByTestId('conversation-title').filter({ hasText: 'Dana Whitfield' }).waitFor({ timeout: WAIT });
      await customer.getByTestId('wl-agent').filter({ hasText: 'Alice' }).waitFor({ timeout: WAIT });
      await agentTranscript(alice).getByText('Hi, my order 4411 never arrived').waitFor({ timeout: WAIT });
      const panel = await alice.getByTestId('conversation').innerText();
      check(!HEX_ID.test(panel), 'the console shows no 32-hex customer id: ' + (panel.match(HEX_ID) || [])[0]);
      const page = await alice.getByTestId('info').getByTestId('context-page-url').textContent();
      check(page === BASE + '/', 'the context says which page the customer came from (no query string): ' + page);
    });

    await step('messages both ways, with delivery ticks and typing', async () => {
      await customerSays(customer, xss);
      const mine = await widgetMessage(customer, xss);
      await mine.and(customer.locator('[data-state="sent"]')).first().waitFor({ timeout: WAIT });
      await agentTranscript(alice).getByText(xss, { exact: true }).waitFor({ timeout: WAIT });
      await alice.getByTestId('message-input').pressSequentially('Let me ', { delay: 20 });
      await customer.getByTestId('wl-typing').filter({ hasText: /\S/ }).waitFor({ timeout: WAIT });
      await agentSays(alice, 'Let me check that for you.');
      await widgetMessage(customer, 'Let me check that for you.');
    });

    await step('chat text is shown as text, never as HTML', async () => {
      for (const page of [customer, alice]) {
        const imgs = await page.locator('img[src="x"]').count();
        check(imgs === 0, 'an <img> from a chat message was rendered');
      }
      check(dialogs.length === 0, 'a script ran: ' + dialogs.join(', '));
      await shot(customer, 'widget-chat');
      await shot(alice, 'console-chat');
    });

    await step('alice transfers to billing (cold, with a note); bob takes it', async () => {
      await openTransfer(alice);
      await alice.getByTestId('transfer-kind').selectOption('queue');
      await alice.getByTestId('transfer-target').fill('billing');
      await alice.getByTestId('transfer-mode').selectOption('cold');
      await alice.getByTestId('transfer-note').fill('Refund for order 4411; tracking shows lost');
      await alice.getByTestId('transfer').click();
      await setAvailable(bob);
      const offer = await acceptOffer(bob);
      check(/transfer/i.test(offer.reason + offer.text), 'the offer says it is a transfer: ' + offer.text);
      check(/Refund for order 4411/.test(offer.note + offer.text), 'the offer carries the note: ' + offer.text);
      await customer.getByTestId('wl-agent').filter({ hasText: 'Bob' }).waitFor({ timeout: WAIT });
      // Bob sees everything said before him.
      await agentTranscript(bob).getByText(xss, { exact: true }).waitFor({ timeout: WAIT });
      await agentSays(bob, 'I have issued the refund for order 4411.');
      await widgetMessage(customer, 'I have issued the refund for order 4411.');
      await shot(bob, 'console-after-transfer');
    });

    await step('bob closes it resolved; the customer answers the survey', async () => {
      // A message that says something: bob sees the satisfaction estimate until the survey answer comes.
      await customerSays(customer, 'Thank you so much, that is wonderful!');
      await agentTranscript(bob).getByText('Thank you so much, that is wonderful!', { exact: true }).waitFor({ timeout: WAIT });
      await bob.getByTestId('customer-facts').filter({ hasText: 'Satisfaction (est.)' }).waitFor({ timeout: WAIT });
      await bob.getByTestId('resolution').selectOption('resolved');
      await bob.getByTestId('close').click();
      await customer.getByTestId('wl-survey').waitFor({ timeout: WAIT });
      await customer.getByTestId('wl-csat-5').click();
      await customer.getByTestId('wl-effort-2').click();
      await customer.getByTestId('wl-resolved-yes').click();
      await customer.getByTestId('wl-comment').fill('Quick and kind, thank you');
      await customer.getByTestId('wl-survey-send').click();
      await customer.getByTestId('wl-survey-done').waitFor({ timeout: WAIT });
      await shot(customer, 'widget-survey');
    });

    await step("after the survey bob's console shows the customer's own answer, not the estimate", async () => {
      const answer = bob.getByTestId('survey-answer');
      await answer.waitFor({ timeout: WAIT });
      const text = await answer.innerText();
      check(/customer.s answer/i.test(text), 'labelled as the customer\'s answer: ' + text);
      check((await answer.getByTestId('survey-csat').textContent()) === '5/5', 'CSAT 5/5: ' + text);
      check((await answer.getByTestId('survey-resolved').textContent()) === 'Yes', 'resolved: yes: ' + text);
      check((await answer.getByTestId('survey-comment').textContent()).includes('Quick and kind, thank you'), 'the comment: ' + text);
      const facts = await bob.getByTestId('customer-facts').innerText();
      check(!/est\./i.test(facts), 'the estimate is no longer shown: ' + facts);
      const mood = await bob.getByTestId('sentiment').innerText();
      check(/answer/i.test(mood) && /5\/5/.test(mood) && !/last message/i.test(mood), 'the mood bar shows the answer, not an estimate: ' + mood);
      await shot(bob, 'console-survey-answer');
    });

    await step('the network drops and comes back: nothing lost, nothing twice', async () => {
      const proxy = await startProxy(BASE);
      const dana = await newPage(browser);
      await openWidget(dana, proxy.url);
      await startChat(dana, 'Dana Whitfield', 'Second question: can I change my address?');
      await acceptOffer(alice);
      await customerSays(dana, 'Before the drop');
      await agentTranscript(alice).getByText('Before the drop', { exact: true }).waitFor({ timeout: WAIT });

      proxy.cut();
      const offline = ['Typed while offline, one', 'Typed while offline, two', 'Typed while offline, three'];
      for (const text of offline) await customerSays(dana, text);
      await agentSays(alice, 'Sent while you were away, one');
      await agentSays(alice, 'Sent while you were away, two');
      for (const text of offline) {
        const item = await widgetMessage(dana, text);
        check(await item.getAttribute('data-state') !== 'sent', `"${text}" marked sent while offline`);
      }
      proxy.restore();

      for (const text of offline) {
        const item = await widgetMessage(dana, text);
        await item.and(dana.locator('[data-state="sent"]')).first().waitFor({ timeout: 30_000 });
        await agentTranscript(alice).getByText(text, { exact: true }).waitFor({ timeout: WAIT });
      }
      await widgetMessage(dana, 'Sent while you were away, two');
      const all = ['Before the drop', ...offline, 'Sent while you were away, one', 'Sent while you were away, two'];
      for (const text of all) {
        check(await countText(widgetMessages(dana), text) === 1, `the widget shows "${text}" once`);
        check(await countText(agentTranscript(alice), text) === 1, `the console shows "${text}" once`);
      }
      // A reload finds the conversation again, whole and once.
      await dana.reload();
      await dana.waitForFunction(() => window.__wlReady != null, null, { timeout: WAIT });
      if (!(await dana.getByTestId('wl-panel').isVisible())) await dana.getByTestId('wl-launcher').click();
      await widgetMessage(dana, 'Sent while you were away, two');
      for (const text of all) {
        check(await countText(widgetMessages(dana), text) === 1, `after a reload the widget shows "${text}" once`);
      }
      await proxy.close();
    });

    await step('keyboard: the launcher opens with Enter, Escape closes and gives focus back', async () => {
      const page = await newPage(browser);
      await page.goto(BASE + '/');
      const launcher = page.getByTestId('wl-launcher');
      await launcher.focus();
      await page.keyboard.press('Enter');
      await page.getByTestId('wl-panel').waitFor({ state: 'visible' });
      const inside = await page.evaluate(() => {
        const host = [...document.querySelectorAll('*')].find((e) => e.shadowRoot && e.shadowRoot.querySelector('[data-testid="wl-panel"]'));
        return !!(host && host.shadowRoot.activeElement && host.shadowRoot.querySelector('[data-testid="wl-panel"]').contains(host.shadowRoot.activeElement));
      });
      check(inside, 'focus moves into the panel when it opens');
      await page.keyboard.press('Escape');
      await page.getByTestId('wl-panel').waitFor({ state: 'hidden' });
      const back = await launcher.evaluate((e) => e.getRootNode().activeElement === e);
      check(back, 'focus returns to the launcher');
    });

    await step('on a phone the panel fills the screen', async () => {
      const phone = await newPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      await openWidget(phone);
      const box = await phone.getByTestId('wl-panel').boundingBox();
      check(box && box.width >= 380, 'panel width on a phone: ' + (box && box.width));
      await shot(phone, 'widget-phone');
    });

    await step('a chat becomes a browser call (WebRTC through rtc) and back', async () => {
      await bob.getByTestId('availability').selectOption('away');
      const sam = await newPage(browser);
      await openWidget(sam);
      await startChat(sam, 'Sam Lee', 'Could we talk instead of typing?');
      await acceptOffer(alice);
      await sam.getByTestId('wl-agent').filter({ hasText: 'Alice' }).waitFor({ timeout: WAIT });
      await sam.getByTestId('wl-voice').click();
      await alice.getByTestId('rtc-answer').click({ timeout: WAIT });
      await alice.locator('[data-testid="rtc-call"][data-state="live"]').waitFor({ timeout: WAIT });
      await sam.getByText(/On a call/).waitFor({ timeout: WAIT });
      await shot(alice, 'console-browser-call');
      await sam.getByTestId('wl-hangup').click();
      await sam.getByText(/On a call/).waitFor({ state: 'hidden', timeout: WAIT });
      await alice.locator('[data-testid="rtc-call"][data-state="live"]').waitFor({ state: 'hidden', timeout: WAIT });
    });

    await moodAndContinueSteps(browser, alice);

    let rita = null;
    await step('a returning customer: alice closes a first chat, the customer comes back', async () => {
      rita = await newPage(browser);
      await openWidget(rita);
      await startChat(rita, 'Rita Okonkwo', 'My blender arrived cracked');
      await acceptOffer(alice);
      await alice.getByTestId('conversation-title').filter({ hasText: 'Rita Okonkwo' }).waitFor({ timeout: WAIT });
      await agentSays(alice, 'I am sorry, please send a photo.');
      await alice.getByTestId('resolution').selectOption('unresolved');
      await alice.getByTestId('close').click();
      await rita.getByTestId('wl-new-chat').waitFor({ state: 'visible', timeout: WAIT });
      await rita.getByTestId('wl-new-chat').click();
      await startChat(rita, 'Rita Okonkwo', 'Back about the cracked blender, photo attached');
      if (await alice.getByTestId('ready').isVisible()) await alice.getByTestId('ready').click();
      const offer = await acceptOffer(alice, 'console-offer');
      check(/Returning \(1 earlier\)/.test(offer.text), 'the offer says the customer is back: ' + offer.text);
      check(offer.preview.includes('Back about the cracked blender'), 'the offer shows the new first message: ' + offer.preview);
      await alice.getByTestId('conversation-title').filter({ hasText: 'Rita Okonkwo' }).waitFor({ timeout: WAIT });
      await agentTranscript(alice).getByText('Back about the cracked blender, photo attached').waitFor({ timeout: WAIT });
      const cards = await infoCards(alice);
      check(cards.context.includes('Rita Okonkwo'), 'the context card before the reload: ' + cards.context);
      check(/1 earlier conversation/i.test(cards.history), 'the history card before the reload: ' + cards.history);
      check(/Repeat contact/i.test(cards.repeat) && /Unresolved/.test(cards.repeat), 'the repeat-contact card before the reload: ' + cards.repeat);
    });

    await step('coaching hints that repeat are shown once, with a count', async () => {
      await agentSays(alice, 'Let me look at the photo.');
      await agentSays(alice, 'I will send a new blender today.');
      const hints = alice.getByTestId('coaching-hint').and(alice.locator('[data-code="next_step"]'));
      await hints.and(alice.locator('[data-count="2"]')).waitFor({ timeout: WAIT });
      check(await hints.count() === 1, 'one next-step hint, not ' + await hints.count());
      check((await hints.first().innerText()).includes('×2'), 'the hint says how often: ' + await hints.first().innerText());
    });

    await step('the console reloaded mid-conversation shows the same context, history and repeat contact', async () => {
      const before = await infoCards(alice);
      await alice.reload();
      await alice.getByTestId('agent-name').filter({ hasText: /\S/ }).waitFor({ timeout: WAIT });
      const tab = alice.getByTestId('conversation-item').filter({ hasText: 'Rita Okonkwo' });
      await tab.waitFor({ timeout: WAIT });
      await tab.click();
      await alice.getByTestId('conversation-title').filter({ hasText: 'Rita Okonkwo' }).waitFor({ timeout: WAIT });
      await agentTranscript(alice).getByText('Back about the cracked blender, photo attached').waitFor({ timeout: WAIT });
      await alice.getByTestId('info').getByTestId('repeat').waitFor({ timeout: WAIT });
      const after = await infoCards(alice);
      check(after.context !== '' && after.context === before.context, 'the context card after the reload: ' + JSON.stringify(after.context) + ' (before: ' + JSON.stringify(before.context) + ')');
      check(/1 earlier conversation/i.test(after.history) && after.history === before.history, 'the history card after the reload: ' + after.history);
      check(/Repeat contact/i.test(after.repeat) && /Unresolved/.test(after.repeat), 'the repeat-contact card after the reload: ' + after.repeat);
      const profile = await alice.getByTestId('customer-sub').textContent();
      check(/Returning customer/.test(profile), 'the profile: ' + profile);
      const panel = await alice.getByTestId('conversation').innerText();
      check(!HEX_ID.test(panel), 'no raw customer id after the reload either');
      await shot(alice, 'console-after-reload');
    });

    await step('at 1280x900 "Close conversation" is in view with the transfer form open', async () => {
      await alice.setViewportSize({ width: 1280, height: 900 });
      await openTransfer(alice);
      const close = alice.getByTestId('close');
      await close.waitFor({ state: 'visible', timeout: WAIT });
      const box = await close.boundingBox();
      const vp = alice.viewportSize();
      check(box && box.x >= 0 && box.y >= 0 && box.x + box.width <= vp.width && box.y + box.height <= vp.height,
        'the Close button is inside the 1280x900 viewport: ' + JSON.stringify(box));
      const scrolled = await alice.evaluate(() => window.scrollY);
      check(scrolled === 0, 'without scrolling the page: ' + scrolled);
      const transcriptBox = await agentTranscript(alice).boundingBox();
      check(transcriptBox && transcriptBox.height >= 200, 'the transcript keeps room: ' + JSON.stringify(transcriptBox));
      await shot(alice, 'console-1280x900');
    });


    await step('the demo page links to the console', async () => {
      const page = await newPage(browser);
      await page.goto(BASE + '/');
      check(await page.locator('a[href*="/agent/"]').count() > 0, 'a link to /agent/');
      // The way to a token that works right after `cargo run` (no `warmline` on PATH then).
      const command = 'cargo run --release -- token agent demo';
      check((await page.getByTestId('token-command').textContent()) === command, 'the demo page says how to mint a token');
      const signin = await newPage(browser);
      await signin.goto(BASE + '/agent/');
      await signin.getByTestId('sign-in').waitFor({ state: 'visible', timeout: WAIT });
      check((await signin.getByTestId('token-command').textContent()) === command, 'the sign-in screen says how to mint a token');
      await shot(signin, 'console-sign-in');
    });
  } finally {
    await browser.close();
  }
  console.log('RESULT ' + JSON.stringify(result));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
