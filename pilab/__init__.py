"""Lab: real SSH and TLS servers that imitate Prime Infrastructure and its peers."""
