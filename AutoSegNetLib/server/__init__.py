"""``autosegnet serve``: the engine's jobs for remote clients (the Slicer module on a desktop without a GPU).

- :mod:`.config` -- the server's settings, its tokens and the rule that an open server is only bound to localhost;
- :mod:`.namespace` -- one workspace per client (token), and names and paths that cannot leave it;
- :mod:`.uploads` -- request bodies streamed to disk with a size limit and a checksum; training-case archives;
- :mod:`.job_commands` -- which engine commands a client may run, with paths mapped into its workspace;
- :mod:`.job_queue` -- the engine processes (the same background jobs as the module's), one GPU queue, re-attach;
- :mod:`.events` -- a job's progress events as a resumable server-sent-event stream;
- :mod:`.app` -- the FastAPI application (``/v1/...``, OpenAPI docs at ``/docs``).

FastAPI and uvicorn are imported only here (``pip install autosegnet[server]``).
"""
