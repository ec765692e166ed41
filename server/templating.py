"""Jinja's compiled template code, kept for the life of the process.

An ``Environment`` compiles each template on first use, and every app a process builds
(the tests build hundreds) has environments of its own. A ``CompiledTemplates`` shared by
environments built alike hands them the code compiled once. Jinja keys it by the
template's file and checks the source's checksum, so an edited template is compiled anew;
environments built with other options (the mails' ``StrictUndefined``) need a cache of
their own, as their code differs."""

from __future__ import annotations

from jinja2.bccache import Bucket, BytecodeCache


class CompiledTemplates(BytecodeCache):
    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()
