"""The management dashboard of the seed ADR: a change-feed subscriber counting expense claims per state."""
