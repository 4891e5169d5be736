"""The worker side: arq-hosted dispatch, the pure router, provider adapters, the sweeper and the simulated
provider farm."""
