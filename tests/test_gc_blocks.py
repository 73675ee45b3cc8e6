"""digest.timings' garbage-collection blocks: what a bulk load builds skips the collection it would
set off (a twentieth of a warm start), and nothing that becomes garbage is kept for ever."""

from __future__ import annotations

import gc
import weakref

from digest.timings import gc_frozen, gc_paused


class Node:
    me: Node


def test_what_a_paused_block_built_goes_to_the_oldest_generation_unwalked() -> None:
    gc.collect()
    with gc_paused():
        assert not gc.isenabled()
        kept = [Node() for _ in range(10_000)]
    assert gc.isenabled()
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(o) in oldest for o in kept)
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_in_a_paused_block_is_still_collected() -> None:
    with gc_paused():
        node = Node()
        node.me = node
        gone = weakref.ref(node)
        del node
    assert gone() is not None  # a cycle: only the collector can free it
    gc.collect()
    assert gone() is None


def test_inside_a_frozen_block_a_paused_one_lets_nothing_out() -> None:
    # a send freezes its edition for the whole send; a plan or a load inside must not unfreeze it
    with gc_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with gc_paused():
            [Node() for _ in range(100)]
        assert gc.get_freeze_count() >= frozen
    assert gc.get_freeze_count() == 0


def test_a_block_entered_with_collection_off_leaves_it_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
