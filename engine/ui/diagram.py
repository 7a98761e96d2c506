"""A workflow definition laid out as a diagram: geometry only, drawn as SVG by `templates/_diagram.html`.

The layout is layered, left to right: a state's column is its distance (in transitions) from the initial state,
and within a column states are ordered to keep the arrows between columns short (a barycentre pass). Forward
arrows run between columns; an arrow back to an earlier column runs below the boxes; an arrow within a column
runs on its right; a self-transition is a loop above its box. Good enough to read a workflow of a few dozen
states at a glance, with no JavaScript and no layout engine.

An arrow is labelled with its trigger (topic); when two transitions out of one state share a trigger (they differ
by their conditions), each label adds the transition's id: `approve (approve-small)`, `approve (approve-big)`.
An instance's diagram also marks the path it took: the transitions it went through and the states it was in.

Nothing here is escaped, on purpose: labels are plain strings, and the template (autoescaped) turns them into
SVG text. Only numbers made here go into attributes unescaped-by-nature (path data, coordinates).
"""

from __future__ import annotations

import textwrap
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass

from engine.domain import Event, EventType, WorkflowDefinition

__all__ = ["Box", "Diagram", "Edge", "labels", "layout", "path_of"]

CHAR_WIDTH = 7.0  # average advance of the 12px sans-serif the stylesheet sets, generous for capitals
MAX_LABEL = 28  # characters shown on an arrow or as a box's id line; the whole text is in the element's <title>
LINE_CHARS = 22  # a box's name wraps at this width, on at most two lines
LINE_HEIGHT = 16.0
DETAIL_HEIGHT = 15.0
BOX_PADDING = 12.0
MIN_BOX_WIDTH = 96.0
MAX_BOX_WIDTH = MAX_LABEL * CHAR_WIDTH + 28
ROW_GAP = 54.0  # room for a self-loop above the box below
MIN_COLUMN_GAP = 110.0
MARGIN = 24.0
START_RADIUS = 7.0
START_SPACE = 44.0  # the start dot and its arrow, left of the first column
BACK_EDGE_STEP = 24.0  # each arrow back to an earlier column runs a little lower than the one before


@dataclass(frozen=True, slots=True)
class Box:
    state: str  # the state id
    lines: tuple[tuple[str, float], ...]  # the name (display name or id) as shown: (text, baseline y)
    detail: str  # the id under a display name, or ""
    detail_y: float
    title: str  # everything, for the tooltip
    x: float
    y: float
    width: float
    height: float
    current: bool
    initial: bool
    terminal: bool
    visited: bool = False  # the instance was in this state at some point

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    path: str  # SVG path data
    label: str
    title: str
    label_x: float
    label_y: float
    label_width: float
    from_current: bool  # a way out of the current state: drawn stronger
    taken: bool = False  # the instance went through this transition


@dataclass(frozen=True, slots=True)
class Diagram:
    width: float
    height: float
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    start_x: float
    start_y: float
    start_path: str
    current: str | None

    def box(self, state: str) -> Box:
        return next(box for box in self.boxes if box.state == state)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def _text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def _layers(definition: WorkflowDefinition) -> dict[str, int]:
    """Column of each state: its breadth-first distance from the initial state (every state is reachable:
    definitions are validated on upload; anything else goes in a last column rather than failing)."""
    layer = {definition.initial_state: 0}
    todo = deque([definition.initial_state])
    while todo:
        state = definition.states.get(todo.popleft())
        for transition in state.transitions if state else ():
            if transition.target not in layer:
                layer[transition.target] = layer[state.id] + 1 if state else 0
                todo.append(transition.target)
    last = max(layer.values(), default=0) + 1
    for state_id in definition.states:
        layer.setdefault(state_id, last)
    return layer


def _order(definition: WorkflowDefinition, layer: dict[str, int]) -> list[list[str]]:
    """States per column, ordered by the mean row of their predecessors (one barycentre sweep)."""
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for state_id in definition.states:  # definition order first: stable, and what the author wrote
        columns[layer[state_id]].append(state_id)
    predecessors: dict[str, list[str]] = {state_id: [] for state_id in definition.states}
    for state in definition.states.values():
        for transition in state.transitions:
            if transition.target != state.id and layer[transition.target] > layer[state.id]:
                predecessors[transition.target].append(state.id)
    for index in range(1, len(columns)):
        rows = {state_id: row for row, state_id in enumerate(columns[index - 1])}
        for earlier in columns[:index - 1]:
            rows.update({state_id: row for row, state_id in enumerate(earlier)})
        original = {state_id: row for row, state_id in enumerate(columns[index])}

        def weight(state_id: str, rows: dict[str, int] = rows, original: dict[str, int] = original) -> float:
            seen = [rows[p] for p in predecessors[state_id] if p in rows]
            return sum(seen) / len(seen) if seen else float(original[state_id])

        columns[index].sort(key=lambda state_id: (weight(state_id), original[state_id]))
    return [column for column in columns if column]


def path_of(events: Collection[Event]) -> tuple[set[tuple[str, str]], set[str]]:
    """The path an instance took, from its events: the (state id, transition id) pairs it went through, and the
    states it was in (created in, moved to by a transition or a recovery)."""
    taken: set[tuple[str, str]] = set()
    visited: set[str] = set()
    for event in events:
        data = event.data
        if event.type is EventType.TRANSITION_APPLIED:
            taken.add((str(data.get("from")), str(data.get("transition"))))
            visited.update((str(data.get("from")), str(data.get("to"))))
        elif event.type in (EventType.CREATED, EventType.RECOVERED) and data.get("state") is not None:
            visited.add(str(data["state"]))
    return taken, visited


def labels(definition: WorkflowDefinition) -> dict[tuple[str, str], str]:
    """The label of each transition, by (state id, transition id): its trigger, and its id too when another
    transition out of the same state has the same trigger."""
    found: dict[tuple[str, str], str] = {}
    for state in definition.states.values():
        shared = Counter(transition.trigger for transition in state.transitions)
        for transition in state.transitions:
            topic = transition.trigger or "any topic"  # a transition without a trigger: taken when its conditions hold
            found[(state.id, transition.id)] = (f"{topic} ({transition.id})" if shared[transition.trigger] > 1
                                                else topic)
    return found


def layout(definition: WorkflowDefinition, *, current: str | None = None,
           taken: Collection[tuple[str, str]] = (), visited: Collection[str] = ()) -> Diagram:
    """The diagram of a definition, with `current` (a state id) highlighted, and the path an instance took:
    `taken` (state id, transition id) pairs and the `visited` states."""
    layer = _layers(definition)
    columns = _order(definition, layer)
    label_of = labels(definition)

    sizes: dict[str, tuple[list[str], str, float, float]] = {}
    for state in definition.states.values():
        name = " ".join((state.display_name or state.id).split())
        lines = textwrap.wrap(name, LINE_CHARS, max_lines=2, placeholder="…", break_on_hyphens=False,
                              break_long_words=False) or [name]
        lines = [_short(line) for line in lines]
        detail = _short(state.id) if state.display_name and state.display_name != state.id else ""
        widest = max(_text_width(text) for text in [*lines, detail])
        width = min(MAX_BOX_WIDTH, max(MIN_BOX_WIDTH, widest + 28))
        height = 2 * BOX_PADDING + len(lines) * LINE_HEIGHT + (DETAIL_HEIGHT if detail else 0)
        sizes[state.id] = (lines, detail, width, height)

    # Each gap between columns is wide enough for the longest label of an arrow that leaves the column.
    gaps: list[float] = []
    for column in columns:
        longest = 0.0
        for state_id in column:
            for transition in definition.states[state_id].transitions:
                longest = max(longest, _text_width(_short(label_of[(state_id, transition.id)])))
        gaps.append(max(MIN_COLUMN_GAP, longest + 40))

    def column_height(column: list[str]) -> float:
        return sum(sizes[state_id][3] for state_id in column) + (len(column) - 1) * ROW_GAP

    top = MARGIN + 34  # a self-loop and its label above the first row
    full_height = max(column_height(column) for column in columns)
    boxes: dict[str, Box] = {}
    x = MARGIN + START_SPACE
    for index, column in enumerate(columns):
        width = max(sizes[state_id][2] for state_id in column)
        y = top + (full_height - column_height(column)) / 2
        for state_id in column:
            state = definition.states[state_id]
            lines, detail, box_width, box_height = sizes[state_id]
            title = state.id if not state.display_name else f"{state.display_name} ({state.id})"
            first = y + BOX_PADDING + LINE_HEIGHT - 4
            boxes[state_id] = Box(
                state_id, tuple((text, first + n * LINE_HEIGHT) for n, text in enumerate(lines)), detail,
                first + (len(lines) - 1) * LINE_HEIGHT + DETAIL_HEIGHT, title, x + (width - box_width) / 2, y,
                box_width, box_height, state_id == current, state_id == definition.initial_state, state.terminal,
                state_id in visited)
            y += box_height + ROW_GAP
        x += width + (gaps[index] if index < len(columns) - 1 else 0)
    right = x
    position = {state_id: (index, row) for index, column in enumerate(columns) for row, state_id in enumerate(column)}

    bottom = top + full_height
    edges: list[Edge] = []
    back_edges = 0
    pairs: dict[tuple[str, str], int] = {}
    for state in definition.states.values():
        for transition in state.transitions:
            source, target = boxes[state.id], boxes[transition.target]
            nth = pairs.get((source.state, target.state), 0)
            pairs[(source.state, target.state)] = nth + 1
            label = _short(label_of[(state.id, transition.id)])
            title = (f"{transition.trigger or 'any topic'} (transition {transition.id}): {state.id} → "
                     f"{transition.target}")
            label_width = _text_width(label) + 10
            if source is target:
                lift = 30 + nth * 16
                x1, x2, y0 = source.cx - 12, source.cx + 12, source.y
                path = (f"M{x1:.1f},{y0:.1f} C{x1 - 26:.1f},{y0 - lift:.1f} {x2 + 26:.1f},{y0 - lift:.1f} "
                        f"{x2:.1f},{y0:.1f}")
                lx, ly = source.cx, y0 - lift * 0.75 - 13
            elif layer[target.state] > layer[source.state]:
                offset = nth * 8.0
                x1, y1 = source.x + source.width, source.cy + offset
                x2, y2 = target.x, target.cy + offset
                bend = (x2 - x1) / 2
                path = f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
                lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 + nth * 16
            elif layer[target.state] == layer[source.state]:
                x1, y1 = source.x + source.width, source.cy
                x2, y2 = target.x + target.width, target.cy
                reach = 46 + nth * 16
                path = f"M{x1:.1f},{y1:.1f} C{x1 + reach:.1f},{y1:.1f} {x2 + reach:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
                lx, ly = max(x1, x2) + reach * 0.75, (y1 + y2) / 2
                right = max(right, lx + label_width / 2)
            else:  # back to an earlier column: down into a channel below every box, along it, and up
                back_edges += 1
                channel = bottom + 18 + (back_edges - 1) * BACK_EDGE_STEP
                column_of_source = columns[position[source.state][0]]
                column_of_target = columns[position[target.state][0]]
                if column_of_source[-1] == source.state:  # nothing below it: straight down
                    start, down_x = f"M{source.cx + 8:.1f},{source.y + source.height:.1f}", source.cx + 8
                else:  # out of its left side, down the gap before its column
                    # below the middle, where arrows from the left come in
                    down_x, out_y = source.x - 16, source.cy + min(10.0, source.height / 2 - 6)
                    start = f"M{source.x:.1f},{out_y:.1f} L{down_x:.1f},{out_y:.1f}"
                if column_of_target[-1] == target.state:
                    up_x = target.cx - 8
                    end = f"L{up_x:.1f},{target.y + target.height:.1f}"
                else:  # up the gap after its column, into its right side
                    up_x, in_y = target.x + target.width + 16, target.cy + min(10.0, target.height / 2 - 6)
                    end = f"L{up_x:.1f},{in_y:.1f} L{target.x + target.width:.1f},{in_y:.1f}"
                r = 10.0
                path = (f"{start} L{down_x:.1f},{channel - r:.1f} Q{down_x:.1f},{channel:.1f} {down_x - r:.1f},"
                        f"{channel:.1f} L{up_x + r:.1f},{channel:.1f} Q{up_x:.1f},{channel:.1f} {up_x:.1f},"
                        f"{channel - r:.1f} {end}")
                lx, ly = (down_x + up_x) / 2, channel
            edges.append(Edge(source.state, target.state, path, label, title, lx, ly, label_width,
                              current is not None and source.state == current, (state.id, transition.id) in taken))

    lowest_edge = max((edge.label_y for edge in edges), default=bottom)
    height = max(bottom, lowest_edge + 10) + MARGIN
    initial = boxes[definition.initial_state]
    start_x = MARGIN + START_RADIUS
    start_path = f"M{start_x + START_RADIUS:.1f},{initial.cy:.1f} L{initial.x:.1f},{initial.cy:.1f}"
    return Diagram(width=right + MARGIN, height=height, boxes=tuple(boxes[s] for s in definition.states),
                   edges=tuple(edges), start_x=start_x, start_y=initial.cy, start_path=start_path,
                   current=current if current in definition.states else None)
