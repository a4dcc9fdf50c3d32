"""The API's page-number pagination, kept to what the OpenAPI schema says `?page=` is: an
integer from 1. DRF's own also reads an empty `?page=` as page 1 and `?page=last` as the last
page, which the schema does not allow; here both are an invalid page (404, like `?page=abc`)."""

from __future__ import annotations

from django.core.paginator import Paginator
from rest_framework import pagination
from rest_framework.request import Request


class PageNumberPagination(pagination.PageNumberPagination):
    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Paginator) -> str | int:
        page = request.query_params.get(self.page_query_param)
        return 1 if page is None else page  # "" fails Paginator.validate_number: Invalid page

    def get_schema_operation_parameters(self, view: object) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
