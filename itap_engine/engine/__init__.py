"""The engine: one tick (:mod:`.core`), the asyncio service around it
(:mod:`.service`), the run lock (:mod:`.lock`) and logging (:mod:`.logs`)."""
