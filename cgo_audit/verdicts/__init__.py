"""From numbers to verdicts: growth per operation (analysis), where the leaked
bytes were allocated (sites, symbolize), and which leaks a baseline accepts
(baseline). Nothing here starts a process."""
