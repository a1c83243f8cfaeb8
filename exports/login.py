"""The login page and the admin's login, with the failed sign-in limits of exports/throttle.py.

The limit is checked in the form's clean(), before Django's authenticate() hashes anything;
every failure anywhere (these forms, HTTP Basic) is counted by the user_login_failed signal.
A refused attempt gets the login page again, with status 429 and Retry-After.
"""

from functools import wraps

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.dispatch import receiver

from exports import throttle
from exports.auth import client_addr


class _LimitedLogin:
    kind = "page"

    def clean(self):
        if self.request is not None:
            self.request.login_kind = self.kind
            try:
                throttle.check(self.cleaned_data.get("username"), client_addr(self.request))
            except throttle.Throttled as refused:
                self.request.login_retry_after = refused.retry_after
                raise ValidationError(
                    "Too many failed logins for this user or from this address. "
                    f"Try again in {refused.retry_after} seconds.",
                    code="throttled",
                ) from None
        return super().clean()


class LimitedAuthenticationForm(_LimitedLogin, AuthenticationForm):
    kind = "page"


class LimitedAdminAuthenticationForm(_LimitedLogin, AdminAuthenticationForm):
    kind = "admin"


def answers_429_when_limited(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        wait = getattr(request, "login_retry_after", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response

    return wrapper


login_page = answers_429_when_limited(
    LoginView.as_view(authentication_form=LimitedAuthenticationForm)
)

admin.site.login_form = LimitedAdminAuthenticationForm


@answers_429_when_limited
def admin_login(request, extra_context=None):
    return admin.site.login(request, extra_context)


@receiver(user_login_failed, dispatch_uid="psimexport-count-failed-logins")
def count_failed_login(sender, credentials, request=None, **kwargs):
    if request is None:  # a management command or a shell: no caller to limit
        return
    throttle.record_failure(
        credentials.get("username"),
        client_addr(request),
        getattr(request, "login_kind", "page"),
    )
