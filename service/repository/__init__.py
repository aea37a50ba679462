"""The models this server serves: which versions to load (policy), each version's life
(loading → ready → draining → unloaded, or failed), and the repository that routes
requests to them and follows the folder as versions are published and removed."""
