"""A member's card picture: what is on it, and the Telegram file_id it was last sent as.

The picture is uploaded once; while nothing printed on it changes (program name, first name,
card number, tier, language), later requests re-send it by file_id.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from cards.token import card_deep_link, sign_card_token, verify_card_token
from ledger.clock import Clock, SystemClock
from storage.fast import Fast
from storage.schema import card_images
from storage.transactions import SyncDatabase

_CARD_IMAGE = Fast(select(card_images).where(card_images.c.member_id == bindparam("member_id")))


@dataclass(frozen=True, slots=True)
class CardPrint:
    """Everything printed on a card except the QR token (which differs on every render)."""

    program_name: str
    first_name: str
    card_number: str
    tier: str
    tier_label: str
    caption_label: str

    @property
    def face_hash(self) -> str:
        fields = [
            self.program_name,
            self.first_name,
            self.card_number,
            self.tier,
            self.tier_label,
            self.caption_label,
        ]
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


class CardService:
    def __init__(
        self,
        engine: AsyncEngine,
        secret_key: str,
        clock: Clock | None = None,
        db: SyncDatabase | None = None,
    ) -> None:
        self.engine = engine
        self.db = db or SyncDatabase(engine)
        self._secret_key = secret_key
        self.clock: Clock = clock or SystemClock()
        # Cards are drawn one at a time, off the event loop: a drawing holds several full-size
        # images, and many at once (one per thread of the loop's default executor) multiplied
        # the process's peak and left each thread's allocator holding its share. The thread
        # starts with the first card.
        self._drawing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="card-drawing")

    async def draw(self, card: CardPrint, bot_username: str) -> bytes:
        """`render` on the cards' own thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._drawing, self.render, card, bot_username)

    def close(self) -> None:
        self._drawing.shutdown(wait=True)

    def deep_link(self, bot_username: str, card_number: str) -> str:
        """The link a cashier's camera opens: t.me/<bot>?start=c_<signed token>."""
        return card_deep_link(bot_username, sign_card_token(card_number, self._secret_key))

    def card_number_from_token(self, token: str) -> str | None:
        """The card number a QR token was signed for; None if it is forged or damaged."""
        return verify_card_token(token, self._secret_key)

    def render(self, card: CardPrint, bot_username: str) -> bytes:
        """The card as an opaque PNG (Telegram turns transparency into black in photos)."""
        # The imaging library (Pillow, qrcode) loads with the first card drawn, not at start:
        # a card is drawn once per member and face, then re-sent by file_id.
        from cards.render import CardFace, render_card

        face = CardFace(
            program_name=card.program_name,
            first_name=card.first_name,
            card_number=card.card_number,
            tier_label=card.tier_label,
            deep_link=self.deep_link(bot_username, card.card_number),
            caption_label=card.caption_label,
            tier=card.tier,
        )
        return render_card(face, opaque=True)

    async def cached_file_id(self, member_id: int, card: CardPrint) -> str | None:
        row = await self.db.read(lambda conn: _CARD_IMAGE(conn, {"member_id": member_id}).first())
        if row is None or row.face_hash != card.face_hash:
            return None
        return str(row.file_id)

    async def remember(self, member_id: int, card: CardPrint, file_id: str) -> None:
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        values = {"face_hash": card.face_hash, "file_id": file_id, "created_at": self.clock.now()}
        statement = insert(card_images).values(member_id=member_id, **values)
        statement = statement.on_conflict_do_update(
            index_elements=[card_images.c.member_id], set_=values
        )
        await self.db.write(lambda conn: conn.execute(statement))

    async def forget(self, member_id: int) -> None:
        """Drop the cached file_id (e.g. Telegram no longer knows it)."""
        await self.db.write(
            lambda conn: conn.execute(
                delete(card_images).where(card_images.c.member_id == member_id)
            )
        )


def erase_member_cards(conn: Connection, member_id: int) -> None:
    """A member erased their data: their card picture (it shows their name) goes."""
    conn.execute(delete(card_images).where(card_images.c.member_id == member_id))
