"""Certificates for a ``tls://`` Dask scheduler (:class:`TLS`) and the one check of a
scheduler address with them (:meth:`TLS.check_address`), used by every run and plan before
any store opens.  Part of :mod:`sbc.dispatch`, the package that knows Dask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sbc.errors import SchedulerError
from sbc.execution import check_scheduler_address


@dataclass(frozen=True)
class TLS:
    """Certificates for a ``tls://`` scheduler (PEM files); unset fields fall back to Dask's
    configuration (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``)."""

    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None

    def check_address(self, scheduler: str | None) -> str | None:
        """The scheduler address checked (:func:`sbc.execution.check_scheduler_address`) with
        these certificates: certificates without a ``tls://`` address, and a ``tls://``
        address without readable certificates, are refused now, before any store opens."""
        scheduler = check_scheduler_address(scheduler)
        self.check_for(scheduler)
        if scheduler and scheduler.startswith("tls://"):
            self.security()
        return scheduler

    def check_for(self, scheduler: str | None) -> None:
        """Refuse certificates that would be ignored: they secure a ``tls://`` scheduler
        address only (plain ``tcp://`` and local workers never read them)."""
        given = [f"{name} {path}" for name, path in (("--tls-ca-file", self.ca_file),
                                                     ("--tls-cert", self.cert),
                                                     ("--tls-key", self.key)) if path]
        if not given or (scheduler and scheduler.startswith("tls://")):
            return
        where = (f"the scheduler address {scheduler} is not a tls:// address"
                 if scheduler else "no scheduler address is given (--scheduler or "
                 "run.scheduler), so fits run locally")
        raise SchedulerError(
            f"TLS certificates were given ({', '.join(given)}), but {where}: they would be "
            "ignored and nothing encrypted. TLS needs a tls:// address: give --scheduler "
            "tls://HOST:PORT (a scheduler listening on TLS), or leave the TLS options out")

    def security(self):
        from distributed.security import Security

        for what, path in (("CA file", self.ca_file), ("certificate", self.cert),
                           ("key", self.key)):
            if path is not None and not os.path.isfile(path):
                raise SchedulerError(f"TLS {what} {path} does not exist or is not a file")
        kwargs = {k: v for k, v in (("tls_ca_file", self.ca_file),
                                    ("tls_client_cert", self.cert),
                                    ("tls_client_key", self.key)) if v is not None}
        sec = Security(require_encryption=True, **kwargs)
        if not sec.tls_ca_file or not sec.tls_client_cert:
            raise SchedulerError("a tls:// scheduler needs a CA file and a client certificate: "
                                 "give --tls-ca-file CA.pem --tls-cert CERT.pem [--tls-key "
                                 "KEY.pem], or set distributed.comm.tls.ca-file and "
                                 "distributed.comm.tls.client.cert in Dask's configuration")
        return sec
