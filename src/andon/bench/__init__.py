"""``andon bench``: measured performance figures (DESIGN.md §9), never asserted by tests."""
