"""The demo's dashboard: what it counts (`View`), how it draws it, and the final summary."""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import Codec
from schemas.errors import SchemaError
from streams.settings import Settings

TOP_N = 5
REFRESH_S = 1.0
# Appended blocks (stdout not a terminal) come less often, so a saved log stays readable.
REFRESH_PLAIN_S = 5.0
_CLEAR, _HOME, _EOL, _EOS = "\x1b[2J", "\x1b[H", "\x1b[K", "\x1b[J"


@dataclass
class View:
    """Everything the dashboard and the summary show, updated by the tasks of the run."""

    dataset: str
    follow: int
    malformed: int
    unbounded: bool = False
    triggers: frozenset[str] = frozenset({"purchase"})  # event kinds that get a recommendation
    started: float = field(default_factory=time.monotonic)
    published: Counter[str] = field(default_factory=Counter)
    purchases: dict[str, str] = field(default_factory=dict)  # event id -> item id
    publish_done: bool = False
    recommended: set[str] = field(default_factory=set)  # cause event ids
    received: int = 0
    dead: Counter[str] = field(default_factory=Counter)  # reason -> count
    last_dead: str = ""
    undecodable: int = 0
    latest: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    base: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=12))
    first_applied: float | None = None
    last_applied: float | None = None
    memory: tuple[float, int] | None = None  # mean bytes, keys sampled
    segment_changes: int = 0
    segment_sizes: dict[int, int] = field(default_factory=dict)
    segment_version: str = ""
    drift: list[dict[str, Any]] = field(default_factory=list)  # alerts, oldest first
    online: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> n, hr, mrr

    def stat(self, name: str) -> int:
        # Counters are cumulative in a shared Redis; this run is the difference.
        value = self.stats.get(name, 0)
        return value if name.endswith("_seen") else value - self.base.get(name, 0)

    @property
    def processed(self) -> int:
        return self.stat("applied") + self.stat("duplicates")

    @property
    def dead_letters(self) -> int:
        return sum(self.dead.values())

    def rate_now(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def mean_rate(self) -> float:
        span = (self.last_applied or 0.0) - (self.first_applied or 0.0)
        return self.processed / span if span > 0 else 0.0

    def complete(self) -> bool:
        return (
            self.publish_done
            # An event Redis has seen before (an earlier run) is a duplicate: no new recommendation.
            and len(self.recommended) + self.stat("duplicates") >= len(self.purchases)
            and self.processed >= self.published["purchase"] + self.published["review"]
            and self.dead_letters >= self.malformed
        )

    @property
    def trigger_label(self) -> str:
        return " and ".join(f"{k}s" for k in sorted(self.triggers))

    def tap(self, messages: Iterable[tuple[str, str, dict[str, Any]]]) -> Iterator[Any]:
        for kind, key, record in messages:
            self.published[kind] += 1
            if kind in self.triggers:
                self.purchases[record["event_id"]] = record["item_id"]
            yield kind, key, record

    def on_record(self, topic: str, value: bytes, settings: Settings, codec: Codec) -> None:
        try:
            if topic == settings.topic_dead_letter:
                letter = codec.decode("DeadLetter", value)
                self.dead[letter["error"]] += 1
                self.last_dead = f"{letter['error']} ({letter['topic']}@{letter['offset']})"
                return
            if topic == settings.topic_drift_alerts:
                self.drift.append(codec.decode("DriftAlert", value))
                return
            if topic == settings.topic_segments:
                change = codec.decode("SegmentChange", value)
                self.segment_changes += 1
                self.segment_version = change["model_version"]
                return
            rec = codec.decode("Recommendation", value)
        except SchemaError:
            self.undecodable += 1
            return
        self.received += 1
        if rec["cause_event_id"] in self.purchases:
            self.recommended.add(rec["cause_event_id"])
        user = rec["user_id"]
        if user in self.latest or len(self.latest) < self.follow:
            self.latest[user] = (self.latest.get(user, (0, rec))[0] + 1, rec)


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def _published(v: View) -> str:
    kinds = ("product", "purchase", "review", "malformed")
    parts = [f"{_n(v.published[k])} {k}{'' if k == 'malformed' else 's'}" for k in kinds]
    return ", ".join(p for p in parts if not p.startswith("0 ")) or "starting"


def _seg(seg: int | None) -> str:
    return "-" if seg is None else str(seg)


def _segments(v: View) -> str:
    """Users per segment, or why there are none yet."""
    if not v.segment_sizes:
        return "(sampling profiles to seed the segmentation)"
    sizes = " ".join(f"{s}:{_n(n)}" for s, n in sorted(v.segment_sizes.items()))
    return f"users per segment {sizes}" + (f" ({v.segment_version})" if v.segment_version else "")


def _online(v: View) -> str:
    """Purchases judged against the list shown just before, per model version."""
    if not v.online:
        return "(no purchase judged yet)"
    return ", ".join(
        f"{version}: HR {s['hr']:.3f} MRR {s['mrr']:.3f} ({_n(s['n'])} judged)"
        for version, s in sorted(v.online.items())
    )


def _alert(a: dict[str, Any]) -> str:
    return f"{a['monitor']} {a['statistic']} {a['value']:.3g} (threshold {a['threshold']:.3g})"


def render(v: View) -> list[str]:
    purchases = len(v.purchases)
    share = f", {100 * len(v.recommended) / purchases:.0f}%" if purchases else ""
    lines = [
        f"{v.dataset} · {_clock(time.monotonic() - v.started)} elapsed",
        f"  published        {_n(sum(v.published.values())):>9} events"
        f"  ({'done' if v.publish_done else 'sending'}: {_published(v)})",
        f"  worker applied   {_n(v.stat('applied')):>9} events  ({_n(v.rate_now())}/s now,"
        f" {_n(v.stat('duplicates'))} duplicates; {_n(v.stat('users_seen'))} users,"
        f" {_n(v.stat('items_seen'))} items)",
        f"  recommendations  {_n(v.received):>9} received"
        f"  ({_n(len(v.recommended))} of {_n(purchases)} {v.trigger_label} covered{share})",
        f"  dead letters     {v.dead_letters:>9}"
        + (f"         last: {v.last_dead}" if v.dead_letters else ""),
        f"  segments         {_n(v.segment_changes):>9} changes   {_segments(v)}",
        f"  online hit rate  {_online(v)}",
        f"  drift alerts     {len(v.drift):>9}"
        + (f"         last: {_alert(v.drift[-1])}" if v.drift else ""),
    ]
    if v.unbounded and v.complete():
        lines.append("  every event published so far is processed; Ctrl-C ends the demo")
    if v.undecodable:
        lines.append(f"  undecodable      {v.undecodable:>9} records on the output topics")
    if v.follow and v.purchases and not v.latest:
        lines += ["", "  (waiting for the first recommendations)"]
    for user, (count, rec) in v.latest.items():
        bought = v.purchases.get(rec["cause_event_id"], "?")
        lines += [
            "",
            f"  user {user} bought {bought} {v.titles.get(bought, '')}".rstrip(),
            f"    recommendation #{count} after event {rec['cause_event_id']}"
            f" ({rec['model_version']}, segment {_seg(rec.get('segment'))}):",
        ]
        for i, item in enumerate(rec["items"][:TOP_N], 1):
            title = v.titles.get(item["item_id"], "")[:40]
            lines.append(
                f"    {i}. {item['item_id']:<10} {title:<40} {item['score']:6.3f}  {item['reason']}"
            )
    return lines


def summary(v: View, wall: float) -> list[str]:
    memory = (
        f"{_n(v.memory[0])} bytes per user (MEMORY USAGE of u:{{uid}}:seq, {v.memory[1]} users)"
        if v.memory
        else "n/a (no user keys)"
    )
    span = (v.last_applied or 0.0) - (v.first_applied or 0.0)
    lines = [
        "summary",
        f"  events published  {_n(sum(v.published.values()))} ({_published(v)})",
        f"  events applied    {_n(v.stat('applied'))}, duplicates {_n(v.stat('duplicates'))}",
        f"  recommendations   {_n(len(v.recommended))} for {_n(len(v.purchases))} {v.trigger_label}"
        f" published ({_n(v.received)} received)",
        f"  dead letters      {v.dead_letters} ({v.malformed} malformed sent)",
        *(f"    {count} x {reason[:90]}" for reason, count in sorted(v.dead.items())),
        f"  users / items     {_n(v.stat('users_seen'))} / {_n(v.stat('items_seen'))}",
        f"  segments          {_n(v.segment_changes)} changes; {_segments(v)}",
        f"  online hit rate   {_online(v)}",
        f"  drift alerts      {len(v.drift)}",
        *(f"    {_alert(a)}" for a in v.drift[-5:]),
        f"  wall time         {_clock(wall)}",
        f"  mean events/s     {_n(v.mean_rate())}"
        f" (worker: {_n(v.processed)} events in {span:.1f}s)",
        f"  Redis memory      {memory}",
    ]
    return lines


class Screen:
    """Redraws in place on a terminal; appends plain blocks to a pipe or a file."""

    def __init__(self, static: list[str]) -> None:
        self.tty = sys.stdout.isatty()
        self.static = static
        self.every = REFRESH_S if self.tty else REFRESH_PLAIN_S
        self.next = 0.0
        print(_CLEAR if self.tty else "\n".join(static), flush=True)

    def show(self, lines: list[str], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next:
            return
        self.next = now + self.every
        if self.tty:
            # A block taller or wider than the terminal would scroll, and redrawing from
            # the top-left corner would then stack copies instead of replacing one.
            cols, rows = shutil.get_terminal_size()
            block = [line[:cols] for line in [*self.static, "", *lines]]
            if len(block) >= rows:
                block = [*block[: max(rows - 2, 1)], "(more below; enlarge the window)"[:cols]]
            print(_HOME + "".join(line + _EOL + "\n" for line in block) + _EOS, end="", flush=True)
        else:
            print("\n" + "\n".join(lines), flush=True)
