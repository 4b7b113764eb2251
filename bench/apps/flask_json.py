"""Flask JSON view: the "realistic small app" of bench/run.sh SUITE=flask.

GET /items?n=10 answers a JSON document of n items (0-100, default 10) built
from the query string: Flask's routing, request parsing and jsonify, as a
small JSON API endpoint does, and no I/O.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/items")
def items():
    n = max(0, min(request.args.get("n", 10, type=int), 100))
    prefix = request.args.get("prefix", "item")
    return jsonify(
        count=n,
        items=[
            {
                "id": i,
                "name": "%s %d" % (prefix, i),
                "price": round(1.25 * (i + 1), 2),
                "in_stock": i % 3 != 0,
                "tags": ["bench", "flask"],
            }
            for i in range(n)
        ],
    )


# krait's and gunicorn's default callable name.
application = app
