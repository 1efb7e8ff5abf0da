"""Background engine jobs: ``python -m AutoSegNetLib <command>`` run detached, followed through files.

Shared by the Slicer module (which starts jobs on the user's computer) and ``autosegnet serve`` (which starts
them for remote clients): :mod:`.process` launches and stops processes, :class:`.engine_job.EngineJob` follows
one, :mod:`.state` turns progress events into what a user sees. Torch-free.
"""
