"""What the host gives the process: listening sockets, uvicorn in our loop, systemd notifications, test crash points."""
