"""Mutation testing for the files a change touches: ``python -m tests.mutation`` (tests/README.md).

Each mutant is one small, realistic bug planted in one file; the tests that cover that file
(``targets.toml``) are run against it. A mutant the tests fail on is *killed*; one they pass
is a *survivor*: a bug that would ship. Two kinds of mutant:

- **listed** (``targets.toml``, ``[[mutant]]``): bugs a reviewer planted on purpose, each
  named by what it does to a user, each with a test that must kill it;
- **generated** (``--auto N``): N of the simple operator changes (``<`` ↔ ``<=``, ``and`` ↔
  ``or``, a number ± 1, ``not`` dropped, ``True`` ↔ ``False``, a call statement removed) the
  runner finds in the files, drawn with a printed seed; ``--changed`` keeps only those on
  lines the working tree changed against ``--base``.

The file is restored after each mutant, whatever happens (Ctrl-C included).
"""
