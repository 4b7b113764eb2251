from django.shortcuts import render


def items(request):
    """Render a small page listing n items (0-100, default 10) from the query."""
    try:
        n = int(request.GET.get("n", 10))
    except ValueError:
        n = 10
    n = max(0, min(n, 100))
    rows = [
        {
            "id": i,
            "name": "item %d" % i,
            "price": 1.25 * (i + 1),
            "in_stock": i % 3 != 0,
        }
        for i in range(n)
    ]
    return render(request, "items.html", {"title": "Items", "items": rows})
