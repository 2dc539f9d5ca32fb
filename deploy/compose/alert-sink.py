"""Example Alertmanager webhook receiver: prints each notification's alerts, one line each."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        for alert in body.get("alerts", []):
            labels, notes = alert.get("labels", {}), alert.get("annotations", {})
            print(f"{alert.get('status')}: {labels.get('alertname')} {json.dumps(labels)}", flush=True)
            for key in ("summary", "description"):
                if key in notes:
                    print(f"  {key}: {notes[key]}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:  # one line per alert above is enough
        pass


HTTPServer(("", 8080), Sink).serve_forever()
