"""`python -m bot demo` (or `make demo`): the whole story offline, in one process, no token.

It starts the Bot API emulator on a free local port and the real application against it (a
throwaway SQLite database in a temporary directory, a random SECRET_KEY, a demo admin), then
plays the people and prints the chat as a transcript while it happens:

1. Anna opens the bot, agrees to the terms, shares her own phone and gets the welcome bonus
   (and Boris, whose Telegram is in Russian, is greeted in Russian);
2. the shop's till, with an API key made for it, posts two purchases to the HTTP API over real
   HTTP; Anna gets a receipt in the chat for each;
3. a third purchase pays part with points: first more than the cap allows (refused), then
   within it;
4. Anna checks her balance and history and asks for her card; the PNG is saved to
   `data/demo-card.png` under the current directory;
5. the owner makes Kate a cashier; Kate scans the QR on Anna's card and records a purchase in
   the bot; Anna gets that receipt too;
6. the owner makes Mia a marketer; Mia composes a broadcast to the English speakers with a gift
   and a 20% control group, previews it, sends a test to herself and sends it; the progress
   message is edited until the delivery report; members come in and buy, and her CRM reads the
   report with the lift over the control group from the HTTP API.

Exit status 0 when every step got the answer it waited for, 1 (with the step and the reason)
otherwise. The narration is this developer tool's own English; everything the bot says comes
from the bot, and button labels are looked up in the bot's own translations.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.keys import ApiKeyService
from bot.build import Services
from bot.run import Application
from bot.settings import Settings
from cards.number import format_card_number
from emulator import BotAPIEmulator, BotMessage, EmulatedUser
from ledger.invariants import check_ledger
from ledger.rules import RulesError, load_rules
from ledger.service import LedgerService
from ledger.views import MemberView
from storage.schema import broadcast_members

ROOT = Path(__file__).resolve().parent.parent
CARD_PATH = Path("data") / "demo-card.png"  # relative to the current directory
TOKEN = "424242:DEMO-OFFLINE-TOKEN"
BOT_USERNAME = "bonus_club_demo_bot"
API_KEY_NAME = "demo-till"

ANNA_ID, ANNA_PHONE, ANNA_PHONE_SHOWN = 1001, "+79991234567", "+7 999 123-45-67"
BORIS_ID = 1002
OWNER_ID = 9001
KATE_ID = 7001
MIA_ID = 7002
CROWD = 300  # more members, so that a control group of 20% can say something
CROWD_FIRST_ID = 20_000

WAIT = 10.0  # seconds to wait for any one answer
TOTAL_TIMEOUT = 60.0  # the whole demo normally takes a few seconds
WIDTH = 100
QUIET_LOGGERS = (
    "aiogram",
    "aiohttp",
    "alembic",
    "sqlalchemy",
    "asyncio",
    "loyalty",
    "emulator",
    "apscheduler",
)


class DemoFailed(Exception):
    """A step did not get the answer it expected."""


# ------------------------------------------------------------------------ transcript


class Transcript:
    """Prints the chat as it happens: who speaks, what the bot says, its buttons."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.width = max(60, min(shutil.get_terminal_size((WIDTH, 24)).columns, WIDTH))
        self._keyboards: dict[int, list[list[str]]] = {}

    @classmethod
    def for_stdout(cls) -> Transcript:
        color = (
            sys.stdout.isatty()
            and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") not in (None, "dumb")
        )
        return cls(color)

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._style(text, "1")

    def dim(self, text: str) -> str:
        return self._style(text, "2")

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def section(self, title: str) -> None:
        self.line()
        self.line(self.bold(f"── {title} " + "─" * max(3, self.width - len(title) - 4)))

    def note(self, text: str) -> None:
        for index, part in enumerate(self._wrap(text, self.width - 3)):
            self.line(self.dim(("ℹ  " if index == 0 else "   ") + part))

    def says(self, name: str, text: str) -> None:
        """What a person sends: `👤 Anna: /start`."""
        self.line(f"👤 {self.bold(name)}: {text}")

    def does(self, name: str, action: str) -> None:
        """What a person does: `👤 Anna taps [✅ I agree]`."""
        self.line(f"👤 {self.bold(name)} {action}")

    def bot(self, to: str, message: BotMessage, saved: str | None = None) -> None:
        self.line(f"🤖 {self.bold('Bot')} → {to}:")
        gutter = "   │ "
        body_width = self.width - len(gutter)
        if message.kind == "photo" and message.photo is not None:
            self.line(gutter + _photo_summary(message.photo, saved))
        for raw_line in message.content.split("\n"):
            for part in self._wrap(raw_line, body_width) or [""]:
                self.line((gutter + part).rstrip())
        for buttons in message.inline_keyboard:
            self.line(gutter + " ".join(f"[{button.text}]" for button in buttons))
        rows = [[button.text for button in row] for row in message.keyboard]
        if rows and rows != self._keyboards.get(message.chat_id):
            self._keyboards[message.chat_id] = rows
            for texts in rows:
                self.line(gutter + "⌨ " + " ".join(f"[{text}]" for text in texts))
        elif message.removes_keyboard:
            self._keyboards.pop(message.chat_id, None)
            self.line(gutter + self.dim("⌨ (keyboard removed)"))

    def http(self, who: str, method: str, path: str, body: Any, status: int, answer: Any) -> None:
        self.line(f"🧾 {self.bold(who)} → {method} {path}")
        if body is not None:
            self._json("   → ", body)
        self._json(f"   ← {status} ", answer)

    def _json(self, prefix: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False)
        parts = self._wrap(text, self.width - len(prefix))
        for index, part in enumerate(parts):
            self.line((prefix if index == 0 else " " * len(prefix)) + self.dim(part))

    @staticmethod
    def _wrap(text: str, width: int) -> list[str]:
        return textwrap.wrap(
            text, width, break_long_words=False, break_on_hyphens=False, replace_whitespace=False
        )


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _photo_summary(png: bytes, saved: str | None) -> str:
    try:
        with Image.open(io.BytesIO(png)) as image:
            size = f"{image.width}×{image.height} {image.format or 'image'}, "
    except OSError:
        size = ""
    where = f", saved to {saved}" if saved else ""
    return f"📷 photo (card, {size}{len(png) / 1024:.0f} KB){where}"


# ------------------------------------------------------------------------ the story


class Demo:
    def __init__(self, out: Transcript, workdir: Path) -> None:
        self.out = out
        self.workdir = workdir
        self.emu = BotAPIEmulator()
        self.app: Application | None = None
        self.http: aiohttp.ClientSession | None = None
        self.step = "starting the emulator and the bot"
        self.card_number = ""
        self.sales = {"till": 0, "cashier": 0}

    # -- plumbing -------------------------------------------------------------------

    @property
    def application(self) -> Application:
        assert self.app is not None, "the application is not running"
        return self.app

    @property
    def services(self) -> Services:
        services = self.application.services
        assert services is not None, "the application is not running"
        return services

    @property
    def ledger(self) -> LedgerService:
        return self.services.ledger

    @property
    def engine(self) -> AsyncEngine:
        return self.ledger.engine

    def t(self, key: str) -> str:
        """A label exactly as the bot draws it for an English-speaking member."""
        i18n = self.application.i18n
        assert i18n is not None
        return i18n.gettext(key, locale="en")

    async def start(self) -> None:
        rules_file = ROOT / "rules.toml"
        if not rules_file.exists():  # not run from a checkout: the current directory's
            rules_file = Path("rules.toml")
        rules = load_rules(rules_file)
        rules_file = self.without_quiet_hours(rules_file)
        self.emu.add_bot(TOKEN, username=BOT_USERNAME, first_name=rules.program_name)
        base_url = await self.emu.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            bot_token=TOKEN,
            telegram_api_url=base_url,
            database_url=f"sqlite+aiosqlite:///{self.workdir / 'demo.db'}",
            admin_ids=(OWNER_ID,),
            api_host="127.0.0.1",
            api_port=0,
            secret_key=secrets.token_urlsafe(32),
            redis_url=None,
            rules_file=rules_file,
            log_level="WARNING",
        )
        self.app = Application(settings)
        await self.app.start()
        self.http = aiohttp.ClientSession(base_url=self.app.api_url)
        out = self.out
        out.line(out.bold(f"{rules.program_name}: a loyalty program in Telegram, offline demo"))
        out.note(f"Telegram   a Bot API emulator at {base_url}, bot @{BOT_USERNAME}, no token")
        out.note("Bot        the real application, long-polling the emulator")
        out.note(f"HTTP API   {self.app.api_url}, for tills and online shops")
        out.note("Database   SQLite in a temporary directory, deleted at the end")
        out.note("Rules      rules.toml, without quiet hours: offers go out at any hour here")

    def without_quiet_hours(self, rules_file: Path) -> Path:
        """The rules, but offers go out at any hour: the demo runs whenever it is started."""
        text = rules_file.read_text(encoding="utf-8")
        for key in ("quiet_hours_start", "quiet_hours_end"):
            text = re.sub(rf'^{key} = "[0-9:]+"', f'{key} = "00:00"', text, flags=re.M)
        copy = self.workdir / "rules.toml"
        copy.write_text(text, encoding="utf-8")
        if load_rules(copy).messages.quiet_hours_start != load_rules(copy).messages.quiet_hours_end:
            raise DemoFailed(f"could not turn the quiet hours off in a copy of {rules_file}")
        return copy

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.app is not None:
            await self.app.stop()
        await self.emu.stop()

    def section(self, title: str) -> None:
        self.step = title
        self.out.section(title)

    async def reply(
        self,
        user: EmulatedUser,
        name: str,
        wanted: Callable[[BotMessage], bool] | None = None,
        what: str = "an answer",
        save_photo: Path | None = None,
    ) -> BotMessage:
        """Wait for the bot's next message to `user`, or for the first one that is `wanted`;
        print everything that arrived up to it (news the bot sends on its own included)."""
        match = wanted or (lambda message: True)
        try:
            await user.wait_for(lambda: any(match(m) for m in user.unread), WAIT, what)
        except AssertionError:
            got = [m.content.split("\n", 1)[0] or m.kind for m in user.unread]
            instead = "; instead: " + " | ".join(got) if got else "; nothing arrived"
            raise DemoFailed(
                f"the bot did not send {what} to {name} within {WAIT:.0f} s{instead}"
            ) from None
        index = next(i for i, message in enumerate(user.unread) if match(message))
        messages = await user.wait_messages(index + 1, timeout=WAIT)
        found = messages[-1]
        if save_photo is not None and found.photo is not None:
            await asyncio.to_thread(_save, save_photo, found.photo)
        for message in messages:
            saved = str(save_photo) if message is found and save_photo is not None else None
            self.out.bot(name, message, saved)
        return found

    def starts(self, key: str) -> Callable[[BotMessage], bool]:
        """Matches a message whose text begins like the bot's text `key` (before any field)."""
        prefix = self.t(key).split("{", 1)[0]
        return lambda message: (message.text or "").startswith(prefix)

    async def say(self, user: EmulatedUser, name: str, text: str) -> None:
        self.out.says(name, text)
        if text.startswith("/"):
            await user.send_command(text)
        else:
            await user.send_text(text)

    async def tap(self, user: EmulatedUser, name: str, message: BotMessage, label: str) -> None:
        self.out.does(name, f"taps [{label}]")
        await user.press_button(message, label)

    async def tap_menu(self, user: EmulatedUser, name: str, label: str) -> None:
        self.out.does(name, f"taps ⌨ [{label}]")
        await user.press_reply_button(label)

    async def call_api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        key: str,
        expect: set[int],
        who: str = "Till",
    ) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response:
            answer = await response.json()
            status = response.status
        self.out.http(who, method, path, body, status, answer)
        if status not in expect:
            wanted = " or ".join(str(code) for code in sorted(expect))
            raise DemoFailed(f"{method} {path} answered {status}, expected {wanted}: {answer}")
        if not isinstance(answer, dict):
            raise DemoFailed(f"{method} {path} answered {answer!r}, expected a JSON object")
        return answer

    async def member(self, telegram_id: int) -> MemberView:
        member = await self.ledger.member_by_telegram(telegram_id)
        if member is None:
            raise DemoFailed(f"user {telegram_id} is not a member")
        return member

    # -- the story ------------------------------------------------------------------

    async def run(self) -> None:
        await self.start()
        anna = self.emu.user(ANNA_ID, "Anna", language_code="en")
        await self.join(anna)
        await self.russian_greeting()
        key = await self.till_purchases(anna)
        await self.pay_with_points(anna, key)
        await self.look_around(anna)
        await self.cashier_sale(anna)
        await self.broadcast(anna)
        await self.summary(anna, key)

    async def join(self, anna: EmulatedUser) -> None:
        self.section("1. Anna joins the program")
        consent, share = self.t("consent-button"), self.t("share-phone-button")
        await self.say(anna, "Anna", "/start")
        greeting = await self.reply(
            anna, "Anna", lambda m: consent in [b.text for b in m.inline_buttons], "the greeting"
        )
        await self.tap(anna, "Anna", greeting, consent)
        await self.reply(anna, "Anna", lambda m: share in m.keyboard_texts, f"a [{share}] button")
        self.out.does("Anna", f"taps ⌨ [{share}] and shares her own contact, {ANNA_PHONE_SHOWN}")
        await anna.press_reply_button(share, phone_number=ANNA_PHONE)
        menu = self.t("menu-card")
        await self.reply(anna, "Anna", lambda m: menu in m.keyboard_texts, "the welcome")
        member = await self.member(ANNA_ID)
        welcome = self.services.rules.welcome_bonus
        if member.balance != welcome:
            raise DemoFailed(f"Anna has {member.balance} points, expected the {welcome} bonus")
        self.card_number = member.card_number

    async def russian_greeting(self) -> None:
        self.out.line()
        self.out.note("Meanwhile Boris, whose Telegram is set to Russian, opens the bot too:")
        boris = self.emu.user(BORIS_ID, "Борис", language_code="ru")
        await self.say(boris, "Борис", "/start")
        greeting = await boris.wait_message(timeout=WAIT)
        first_line = (greeting.text or "").split("\n", 1)[0]
        self.out.line(f"🤖 {self.out.bold('Bot')} → Борис:")
        self.out.line(f"   │ {first_line} …")
        self.out.note("(the rest is in Russian too; the demo follows Anna, in English)")

    async def till_purchases(self, anna: EmulatedUser) -> str:
        self.section("2. The shop's till posts purchases over HTTP")
        api_key, secret = await ApiKeyService(self.engine).create(API_KEY_NAME)
        self.out.note(
            f"API key #{api_key.key_id} '{api_key.name}' created, as `python -m bot api-key "
            f"create --name {API_KEY_NAME}` does: {secret[:10]}…, sent as "
            "'Authorization: Bearer <key>'."
        )
        self.out.note("Anna tells the till her phone number; the till looks up her card:")
        found = await self.call_api(
            "GET", f"/api/v1/members/{quote(ANNA_PHONE, safe='')}", None, secret, {200}
        )
        if found.get("card_number") != self.card_number:
            raise DemoFailed(f"the API found card {found.get('card_number')}, not Anna's")
        for receipt_id, amount in (("R-1001", "1500.00"), ("R-1002", "8600.00")):
            body = {
                "receipt_id": receipt_id,
                "customer": self.card_number,
                "amount": amount,
                "redeem_points": 0,
            }
            await self.call_api("POST", "/api/v1/purchases", body, secret, {201})
            self.sales["till"] += 1
            await self.receipt(anna, receipt_id)
        return secret

    async def receipt(self, anna: EmulatedUser, receipt_id: str) -> None:
        await self.reply(
            anna, "Anna", lambda m: receipt_id in (m.text or ""), f"the receipt for {receipt_id}"
        )

    async def pay_with_points(self, anna: EmulatedUser, key: str) -> None:
        self.section("3. Paying part of a purchase with points")
        rules = self.services.rules
        amount = "800.00"
        member = await self.member(ANNA_ID)
        self.out.note(
            f"Anna wants to pay for an {amount[:-3]} ₽ purchase with all her {member.balance} "
            f"points; points may pay at most {rules.max_redeem_percent}% of a purchase."
        )
        body: dict[str, Any] = {
            "receipt_id": "R-1003",
            "customer": self.card_number,
            "amount": amount,
            "redeem_points": member.balance,
        }
        answer = await self.call_api("POST", "/api/v1/purchases", body, key, {201, 422})
        if "error" in answer:
            allowed = answer["error"].get("allowed")
            if not isinstance(allowed, int) or allowed <= 0:
                raise DemoFailed(f"the refusal did not say how many points are allowed: {answer}")
            self.out.note(f"Refused and nothing recorded; the till retries with {allowed} points:")
            body["redeem_points"] = allowed
            answer = await self.call_api("POST", "/api/v1/purchases", body, key, {201})
        if answer.get("redeemed") != body["redeem_points"]:
            raise DemoFailed(f"expected {body['redeem_points']} points redeemed: {answer}")
        self.sales["till"] += 1
        await self.receipt(anna, "R-1003")

    async def look_around(self, anna: EmulatedUser) -> None:
        self.section("4. Anna checks her balance, history and card")
        await self.tap_menu(anna, "Anna", self.t("menu-balance"))
        await self.reply(anna, "Anna", self.starts("balance-usable"), "the balance")
        await self.tap_menu(anna, "Anna", self.t("menu-history"))
        await self.reply(anna, "Anna", self.starts("history-title"), "the history")
        await self.tap_menu(anna, "Anna", self.t("menu-card"))
        await self.reply(
            anna, "Anna", lambda m: m.photo is not None, "the card picture", save_photo=CARD_PATH
        )

    async def cashier_sale(self, anna: EmulatedUser) -> None:
        self.section("5. In the shop: a cashier scans Anna's card")
        owner = self.emu.user(OWNER_ID, "Oleg", language_code="en")
        kate = self.emu.user(KATE_ID, "Kate", language_code="en")
        self.out.note(
            f"Oleg owns the shop (his id {OWNER_ID} is in ADMIN_IDS); Kate works the till."
        )
        await self.say(owner, "Oleg", f"/staff add {KATE_ID} cashier")
        await self.reply(owner, "Oleg")
        await self.reply(kate, "Kate")

        link = await asyncio.to_thread(self.scan_card)
        self.out.does("Kate", "scans the QR on Anna's card with her phone camera; it reads")
        self.out.line(f"   {link}")
        self.out.note("Her phone opens the bot, and Telegram sends /start with the signed token:")
        await self.say(kate, "Kate", f"/start {link.split('start=', 1)[-1]}")
        panel = await self.reply(kate, "Kate")
        await self.tap(kate, "Kate", panel, self.t("cashier-record"))
        await self.reply(kate, "Kate")
        await self.say(kate, "Kate", "640")
        step = await self.reply(kate, "Kate")
        if self.t("cashier-redeem-none") in [b.text for b in step.inline_buttons]:
            await self.tap(kate, "Kate", step, self.t("cashier-redeem-none"))
            step = await self.reply(kate, "Kate")
        await self.tap(kate, "Kate", step, self.t("cashier-confirm-button"))
        await self.reply(kate, "Kate")
        self.sales["cashier"] += 1
        # A sale in the bot: the receipt has no number (its internal id means nothing to Anna).
        await self.receipt(anna, self.t("receipt-purchase-in-bot").format(amount="640"))

    async def broadcast(self, anna: EmulatedUser) -> None:
        self.section("6. A marketer sends an offer with a control group")
        owner = self.emu.user(OWNER_ID)
        mia = self.emu.user(MIA_ID, "Mia", language_code="en")
        await self.crowd()
        await self.say(owner, "Oleg", f"/staff add {MIA_ID} marketer")
        await self.reply(owner, "Oleg")
        await self.reply(mia, "Mia")
        await self.say(mia, "Mia", "/broadcast")
        screen = await self.reply(mia, "Mia", what="the composer")
        await self.tap(mia, "Mia", screen, self.t("bc-cond-language"))
        choices = await self.edited(mia, "Mia", screen)
        await self.tap(mia, "Mia", choices, self.t("language-name"))
        screen = await self.edited(mia, "Mia", choices)
        await self.tap(mia, "Mia", screen, self.t("bc-next"))
        await self.edited(mia, "Mia", screen)
        await self.say(
            mia,
            "Mia",
            "Hi {first_name}! This week a coffee is on us: you have <b>{balance}</b> points.",
        )
        screen = await self.reply(mia, "Mia", what="the message step")
        await self.tap(mia, "Mia", screen, self.t("bc-add-gift"))
        await self.edited(mia, "Mia", screen)
        await self.say(mia, "Mia", "50 7")
        screen = await self.reply(mia, "Mia", what="the gift")
        await self.tap(mia, "Mia", screen, self.t("bc-next"))
        screen = await self.edited(mia, "Mia", screen)
        await self.tap(mia, "Mia", screen, "20%")
        screen = await self.edited(mia, "Mia", screen)
        await self.tap(mia, "Mia", screen, self.t("bc-show-preview"))
        controls = await self.reply(
            mia,
            "Mia",
            lambda m: self.t("bc-send-test") in [b.text for b in m.inline_buttons],
            "the preview",
        )
        await self.tap(mia, "Mia", controls, self.t("bc-send-test"))
        controls = await self.reply(
            mia,
            "Mia",
            lambda m: self.t("bc-next") in [b.text for b in m.inline_buttons],
            "the test to herself",
        )
        await self.tap(mia, "Mia", controls, self.t("bc-next"))
        screen = await self.edited(mia, "Mia", controls)
        await self.tap(mia, "Mia", screen, self.t("bc-send-now"))
        summary = await self.edited(mia, "Mia", screen)
        await self.tap(mia, "Mia", summary, self.t("bc-confirm"))
        await self.edited(mia, "Mia", summary)
        progress = await self.reply(mia, "Mia", what="the progress message")
        self.out.note("The progress message is edited in place while the offer goes out…")
        done = self.t("bc-status-done")
        try:
            await mia.wait_for(lambda: done in progress.content, 30, "the delivery report")
        except AssertionError:
            raise DemoFailed("the broadcast did not finish within 30 s") from None
        mia.mark_read()
        self.out.bot("Mia", progress)
        await self.reply(anna, "Anna", lambda m: "coffee" in m.content, "the offer")
        await self.report()

    async def crowd(self) -> None:
        """More members, as a shop that has run for a while has (half of them English)."""
        for n in range(CROWD):
            telegram_id = CROWD_FIRST_ID + n
            language = "en" if n % 2 else "ru"
            self.emu.user(telegram_id, f"Guest{n}", language_code=language)
            await self.ledger.register_member(
                f"+7900{telegram_id:07d}",
                telegram_id=telegram_id,
                first_name=f"Guest{n}",
                language=language,
            )
        self.out.note(f"The shop has {CROWD} more members by now, half of them English speakers.")

    async def report(self) -> None:
        """Members come in after the offer; the CRM reads the report with the lift."""
        broadcasts = self.services.broadcasts
        (broadcast,) = await broadcasts.recent(1)
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(broadcast_members.c.member_id, broadcast_members.c.control).where(
                        broadcast_members.c.broadcast_id == broadcast.id
                    )
                )
            ).all()
        anna = (await self.member(ANNA_ID)).member_id  # her purchases are the story's own
        recipients = [row.member_id for row in rows if not row.control and row.member_id != anna]
        control = [row.member_id for row in rows if row.control and row.member_id != anna]
        buyers = recipients[::3] + control[::8]  # a third of the recipients, an eighth of control
        for n, member_id in enumerate(buyers):
            await self.ledger.purchase(
                receipt_id=f"R-2{n:03d}", member_id=member_id, amount_kopecks=45_000
            )
        self.out.note(
            f"(The demo does not wait a week:) {len(buyers)} of those members come in and buy, "
            f"{len(recipients[::3])} who got the offer and {len(control[::8])} of the control "
            "group. Mia's CRM reads the report:"
        )
        key = (await ApiKeyService(self.engine).create("demo-crm", scope="marketing"))[1]
        answer = await self.call_api(
            "GET", f"/api/v1/broadcasts/{broadcast.public_id}", None, key, {200}, who="CRM"
        )
        attribution = answer.get("attribution") or {}
        if attribution.get("lift", {}).get("state") != "measured":
            raise DemoFailed(f"the report has no measured lift: {attribution}")
        mia = self.emu.user(MIA_ID)
        await self.say(mia, "Mia", "/broadcasts")
        listing = await self.reply(mia, "Mia", what="the list of broadcasts")
        await self.tap(mia, "Mia", listing, broadcast.public_id)
        await self.edited(mia, "Mia", listing)

    async def edited(self, user: EmulatedUser, name: str, message: BotMessage) -> BotMessage:
        """Wait for the bot to edit `message` in place (a step of a screen); print it."""
        try:
            edited = await user.wait_edit(message, timeout=WAIT)
        except (AssertionError, TimeoutError):
            raise DemoFailed(
                f"the bot did not change its screen for {name} within {WAIT:.0f} s"
            ) from None
        self.out.bot(name, edited)
        return edited

    def scan_card(self) -> str:
        """What a phone camera reads from the saved card: the QR's deep link."""
        try:
            import zxingcpp
        except ImportError:  # installed without the dev tools: make the same kind of link
            return self.services.cards.deep_link(BOT_USERNAME, self.card_number)
        with Image.open(CARD_PATH) as image:
            found = zxingcpp.read_barcodes(image)
        if len(found) != 1 or "start=c_" not in found[0].text:
            raise DemoFailed(f"could not read the QR code on {CARD_PATH}")
        return str(found[0].text)

    async def summary(self, anna: EmulatedUser, key: str) -> None:
        for message in await anna.wait_messages(len(anna.unread)):  # news the bot sent itself
            self.out.bot("Anna", message)
        self.section("Summary")
        answer = await self.call_api("GET", f"/api/v1/members/{self.card_number}", None, key, {200})
        problems = await check_ledger(self.engine)
        if problems:
            raise DemoFailed(f"the ledger does not add up: {problems}")
        tier = self.t(f"tier-{answer.get('tier')}")
        out = self.out
        out.line(
            f"Anna: card {format_card_number(self.card_number)} · {tier} tier · "
            f"{answer.get('balance')} points · {len(anna.messages)} messages from the bot"
        )
        out.line(
            f"{sum(self.sales.values())} purchases: {self.sales['till']} posted by the till over "
            f"HTTP, {self.sales['cashier']} recorded by the cashier in the bot."
        )
        out.line("Ledger check: every balance equals its lots and its journal.")
        out.line(f"Her card: {CARD_PATH} (in {Path.cwd()}); its QR opens the bot on her card.")


# --------------------------------------------------------------------------- entry


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="⚠ %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


async def run_demo() -> int:
    """Play the whole story; 0 when every step got its answer, 1 otherwise."""
    _quiet_logs()
    out = Transcript.for_stdout()
    started = time.monotonic()
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
    step = "starting"
    try:
        with tempfile.TemporaryDirectory(prefix="loyalty-demo-") as workdir:
            demo = Demo(out, Path(workdir))
            try:
                async with asyncio.timeout(TOTAL_TIMEOUT):
                    await demo.run()
            finally:
                step = demo.step
                await demo.close()
    except asyncio.CancelledError:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except TimeoutError:
        return _failed(step, f"the demo took longer than {TOTAL_TIMEOUT:.0f} s")
    except (DemoFailed, AssertionError, RulesError) as error:
        return _failed(step, str(error))
    except Exception as error:
        traceback.print_exc()
        return _failed(step, f"{type(error).__name__}: {error}")
    out.line()
    out.line(f"✅ Demo finished in {time.monotonic() - started:.1f} s. Nothing went to Telegram.")
    return 0


def _failed(step: str, reason: str) -> int:
    print(f"\n❌ The demo failed at “{step}”:\n{reason}", file=sys.stderr, flush=True)
    return 1
