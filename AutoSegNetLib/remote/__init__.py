"""The client side of ``autosegnet serve``, on the standard library only (it runs inside Slicer's Python).

- :mod:`.connection` -- HTTP calls with the bearer token, JSON errors turned into :class:`RemoteError`, streamed
  uploads and downloads, and the server-sent-event reader;
- :mod:`.remote_job` -- :class:`RemoteJob`, a server job behind the same interface as a local
  :class:`~AutoSegNetLib.jobs.engine_job.EngineJob` (``poll`` never waits: a thread talks to the server);
- :mod:`.dataset_sync` -- upload a raw dataset's changed cases, incrementally.
"""
