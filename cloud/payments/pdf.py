"""An invoice as a PDF (fpdf2): the site, the number, the lines with their periods, and the
tariff version they came from, so that a driver can check it by hand. Times are shown in the
site's time zone (the tariff's) when known, else UTC."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from fpdf import FPDF

from cloud.payments.views import InvoiceOut


def _text(value: object) -> str:
    return str(value).encode("latin-1", "replace").decode("latin-1")


def _when(value: datetime | None, zone: ZoneInfo | None) -> str:
    if value is None:
        return ""
    local = value.astimezone(zone) if zone is not None else value
    return local.strftime("%Y-%m-%d %H:%M %Z")


def invoice_pdf(invoice: InvoiceOut, *, site_name: str | None = None, time_zone: str | None = None) -> bytes:
    zone = ZoneInfo(time_zone) if time_zone else None
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _text(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for label, value in (("Site", site_name or invoice.site_id), ("Customer account", invoice.account_id),
                         ("Issued", _when(invoice.issued_at, zone)), ("Stay", invoice.stay_id or "-"),
                         ("Bay", invoice.bay_id or "-"), ("Arrived", _when(invoice.arrived_at, zone) or "-"),
                         ("Departed", _when(invoice.departed_at, zone) or "-"),
                         ("Tariff", f"site tariff version {invoice.tariff_version}" if invoice.tariff_version
                          else "-"), ("Status", invoice.status)):
        pdf.cell(45, 6, _text(label + ":"))
        pdf.cell(0, 6, _text(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 9)
    widths = (80, 25, 15, 25, 25)
    for width, head in zip(widths, ("Line", "Quantity", "Unit", "Unit price", "Amount"), strict=True):
        pdf.cell(width, 7, head, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=8)
    for line in invoice.lines:
        period = ""
        if line.period_start is not None and line.period_end is not None and line.period_start != line.period_end:
            period = f" {_when(line.period_start, zone)} - {_when(line.period_end, zone)}"
        cells = (line.description + period, f"{line.quantity}", line.unit, f"{line.unit_price}", f"{line.amount}")
        x, y = pdf.get_x(), pdf.get_y()
        pdf.multi_cell(widths[0], 5, _text(cells[0]), border=1)
        height = pdf.get_y() - y
        pdf.set_xy(x + widths[0], y)
        for width, cell in zip(widths[1:], cells[1:], strict=True):
            pdf.cell(width, height, _text(cell), border=1, align="R")
        pdf.ln(height)
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    for label, amount in (("Net", invoice.net), ("Tax", invoice.tax), ("Total", invoice.total),
                         ("Paid", invoice.paid), ("Amount due", invoice.amount_due)):
        pdf.cell(145, 6, _text(label), align="R")
        pdf.cell(25, 6, _text(f"{amount} {invoice.currency}"), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
